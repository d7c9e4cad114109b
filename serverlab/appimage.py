"""The app's image: derived from the lab image, holding the user's app and its dependencies.

:func:`build_app_image` tags it ``serverlab-app:<SERVERLAB_TAG>-<digest>``, where the
digest covers the app's files and requirements (:attr:`serverlab.appspec.AppSpec.digest`),
the lab image it derives from and this recipe: an unchanged app on an unchanged lab
image is not rebuilt (the image is found and reused).

Containers here reach no package index, so dependencies are downloaded **on this
machine** (``pip download``, for the image's Python and platform, as
``scripts/provision-offline.sh`` does): first from the lab's wheelhouse (``wheels/``)
alone, then, for what is not there, from the index. The image then installs them with
``pip install --no-index`` from that wheelhouse, constrained to the lab's own pinned
versions (``app/requirements.txt``), so an app cannot change the servers being compared.
A folder with a ``pyproject.toml`` is built into a wheel here (``pip wheel --no-deps``)
and installed with its dependencies.

The image keeps the lab image's unprivileged user (uid 10001), its hardening (no
setuid/setgid binaries) and ``/opt/venv``; the app's code is at
:data:`serverlab.appspec.CONTAINER_APP_DIR` (read-only at run time; ``writable`` paths
are put on a tmpfs by the backend). :func:`check_app_imports` imports the app in a
container built like a server's before anything is measured.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from serverlab import LabError
from serverlab.appspec import CONTAINER_APP_DIR, AppSpec, app_files
from serverlab.backends.base import ROOT, run_command

#: Changes whenever the Dockerfile below changes, so that images built by an older recipe are rebuilt.
RECIPE_VERSION = "1"
#: The platforms wheels are downloaded for (the lab image's glibc, x86-64).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
#: Lines of pip's (or docker build's) output shown when installing fails.
PIP_TAIL_LINES = 12
#: Seconds a download or an image build may take.
BUILD_TIMEOUT_S = 1800

DOCKERFILE = """\
# written by serverlab.appimage: the user's app on top of the lab image
FROM {base}
USER 0:0
COPY wheels/ /tmp/wheels/
COPY requirements.txt constraints.txt /tmp/
RUN if [ -s /tmp/requirements.txt ]; then \\
      pip install --no-cache-dir --no-index --find-links /tmp/wheels -c /tmp/constraints.txt -r /tmp/requirements.txt; \\
    fi \\
    && rm -rf /tmp/wheels /tmp/requirements.txt /tmp/constraints.txt \\
    && find / -xdev -perm /6000 -type f -exec chmod a-s {{}} +
COPY app/ {app_dir}/
RUN chmod -R a+rX {app_dir}
ENV PYTHONPATH=/srv/app:/srv:{app_dir} \\
    SERVERLAB_APP_DIR={app_dir}
WORKDIR {app_dir}
LABEL serverlab.app.digest="{digest}"
USER 10001:10001
"""


class AppBuildError(LabError):
    """The app's image cannot be built: its requirements do not install (pip's last lines
    are in the message), the build fails, or the app does not import in it."""


@dataclass(frozen=True)
class AppImage:
    """The app's image as :func:`build_app_image` left it.

    :param tag: e.g. ``"serverlab-app:latest-3f2a9c0d1e2b4a5f"``.
    :param built: whether it was built now (``False``: an image of that digest was reused).
    :param seconds: how long finding or building it took.
    """

    tag: str
    built: bool
    seconds: float


def _tail(text: str, lines: int = PIP_TAIL_LINES) -> str:
    return "\n".join(line for line in text.strip().splitlines()[-lines:])


def image_tag(app: AppSpec, base_id: str, lab_tag: str) -> str:
    """The derived image's tag: ``serverlab-app:<lab_tag>-<16 hex digits>`` over the app's digest,
    the base image's id and :data:`RECIPE_VERSION`."""
    digest = hashlib.sha256(f"{app.digest}\0{base_id}\0{RECIPE_VERSION}\0{app.package}".encode()).hexdigest()[:16]
    return f"serverlab-app:{lab_tag}-{digest}"


def _requirements(app: AppSpec, context: Path) -> list[str]:
    """Write the requirement lines to install into ``context/requirements.txt``; return them."""
    lines: list[str] = []
    if app.requirements:
        lines += [line for line in Path(app.requirements).read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    if app.package:
        try:
            project = tomllib.loads((Path(app.path) / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise AppBuildError(f"{app.path}/pyproject.toml: {err}") from None
        lines += [str(dep) for dep in project.get("dependencies", [])]
    (context / "requirements.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return lines


def lab_constraints() -> str:
    """The lab's pinned versions (``app/requirements.txt``) as a pip constraints file.

    pip refuses extras in a constraint ("Constraints cannot have extras"), so
    ``flask[async]==3.1.3`` becomes ``flask==3.1.3``: the version is what the user's app
    must not change; the extra's own packages are pinned on lines of their own.

    :return: the constraints, one requirement per line.
    """
    lines = []
    for line in (ROOT / "app" / "requirements.txt").read_text(encoding="utf-8").splitlines():
        lines.append(re.sub(r"^([A-Za-z0-9._-]+)\[[^\]]*\]", r"\1", line.strip()))
    return "\n".join(lines) + "\n"


def download_wheels(app: AppSpec, context: Path, python_version: str) -> None:
    """Fill ``context/wheels`` with wheels of the app's requirements for the image's Python.

    Tries the lab's wheelhouse alone first (nothing leaves the machine), then with the index.

    :param python_version: the image's ``major.minor`` (e.g. ``"3.11"``).
    :raises AppBuildError: with pip's last lines, if they cannot be downloaded (or the
        package cannot be built into a wheel).
    """
    wheels = context / "wheels"
    wheels.mkdir(exist_ok=True)
    (context / "constraints.txt").write_text(lab_constraints(), encoding="utf-8")
    lines = _requirements(app, context)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    if app.package:
        built = run_command([*pip, "wheel", "--no-deps", "-w", str(wheels), app.path], BUILD_TIMEOUT_S)
        if built.returncode != 0:
            raise AppBuildError(f"{app.path}: pip could not build the package (pyproject.toml):\n{_tail(built.output)}")
        names = [p.name for p in wheels.glob("*.whl")]
        with (context / "requirements.txt").open("a", encoding="utf-8") as handle:
            handle.writelines(f"/tmp/wheels/{name}\n" for name in names)
    if not lines:
        return
    download = [*pip, "download", "--only-binary=:all:", *[f"--platform={p}" for p in PLATFORMS],
                "--python-version", python_version, "--implementation", "cp", "-d", str(wheels),
                "-c", str(context / "constraints.txt"), "--find-links", str(ROOT / "wheels")]
    requirement_file = context / "requirements-download.txt"
    requirement_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    offline = run_command([*download, "--no-index", "-r", str(requirement_file)], BUILD_TIMEOUT_S)
    if offline.returncode == 0:
        return
    online = run_command([*download, "-r", str(requirement_file)], BUILD_TIMEOUT_S)
    if online.returncode != 0:
        where = app.requirements or f"{app.path}/pyproject.toml"
        raise AppBuildError(f"{where}: the app's requirements do not install (for Python {python_version}, "
                            f"constrained to the lab's pinned versions in app/requirements.txt); pip said:\n"
                            f"{_tail(online.output)}")


def _context(app: AppSpec, base: str, python_version: str, directory: Path) -> Path:
    """Write the build context (app files, wheels, requirements, Dockerfile) into ``directory``."""
    skipped = tuple(path[len(CONTAINER_APP_DIR) + 1:] for path in app.writable)
    root = Path(app.path)
    for rel in app_files(root, skipped):
        target = directory / "app" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    (directory / "app").mkdir(exist_ok=True)
    download_wheels(app, directory, python_version)
    (directory / "Dockerfile").write_text(DOCKERFILE.format(base=base, app_dir=CONTAINER_APP_DIR, digest=app.digest))
    return directory


def build_app_image(app: AppSpec, base: str, python_version: str, lab_tag: str,
                    progress: Callable[[str], None] = print) -> AppImage:
    """Find or build the app's image on top of the lab image ``base``.

    :param base: the lab image (e.g. ``"serverlab:latest"``), already built.
    :param python_version: the lab image's Python, ``major.minor`` (wheels are downloaded for it).
    :param lab_tag: ``SERVERLAB_TAG`` (part of the derived tag, so engineers sharing a machine do not collide).
    :param progress: where to say what happens and how long it took.
    :raises AppBuildError: if the base image is missing, the requirements do not install
        (pip's last lines), or ``docker build`` fails (its last lines).
    """
    started = time.monotonic()
    inspect = run_command(["docker", "image", "inspect", "--format", "{{.Id}}", base], 60)
    if inspect.returncode != 0:
        raise AppBuildError(f"the lab image {base} is missing: {inspect.output.strip()[-200:]}")
    tag = image_tag(app, inspect.output.strip(), lab_tag)
    if run_command(["docker", "image", "inspect", "--format", "{{.Id}}", tag], 60).returncode == 0:
        seconds = time.monotonic() - started
        progress(f"app image {tag}: unchanged app (digest {app.digest}), reused in {seconds:.1f} s, not rebuilt")
        return AppImage(tag, False, seconds)
    progress(f"building the app image {tag} from {app.path} (digest {app.digest})...")
    with tempfile.TemporaryDirectory(prefix="serverlab-app-") as tmp:
        context = _context(app, base, python_version, Path(tmp))
        build = run_command(["docker", "build", "--network", "none", "-t", tag, str(context)], BUILD_TIMEOUT_S)
    if build.returncode != 0:
        raise AppBuildError(f"building the app image failed (the app's requirements may not install from the "
                            f"wheelhouse); docker build said:\n{_tail(build.output)}")
    seconds = time.monotonic() - started
    progress(f"app image {tag}: built in {seconds:.1f} s")
    return AppImage(tag, True, seconds)


def container_options(app: AppSpec) -> list[str]:
    """``docker run`` options giving a one-off container a server's hardening and the app's
    environment and writable tmpfs paths (the backend's compose override does the same for servers)."""
    options = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--network", "none",
               "--tmpfs", "/tmp:size=64m,mode=1777"]
    for path in app.writable:
        options += ["--tmpfs", f"{path}:size=64m,mode=1777"]
    for name, value in app.environment().items():
        options += ["-e", f"{name}={value}"]
    return options


def check_app_imports(app: AppSpec, tag: str) -> None:
    """Import the app in its image, in a container hardened like a server's (no setup commands run).

    :raises AppBuildError: with the import error's last line (or the variable the app
        reads and nobody set), naming the WSGI target.
    """
    done = run_command(["docker", "run", "--rm", *container_options(app), "--entrypoint", "python", tag,
                        "-m", "labapp.appshim", "--check"], 120)
    if done.returncode != 0:
        lines = [line for line in done.output.strip().splitlines() if line.startswith("error: ")]
        reason = lines[-1][len("error: "):] if lines else _tail(done.output, 5)
        raise AppBuildError(f"the app {app.wsgi!r} from {app.path} does not load: {reason}")
