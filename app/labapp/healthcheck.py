"""The container healthcheck, callable from Python: ``healthcheck.sh`` (beside this file) run by bash.

The check itself is the shell script that ``docker-compose.yml`` and ``app/Dockerfile``
run inside every server container (:data:`SCRIPT`): it starts no Python interpreter,
because Docker charges a healthcheck's CPU to the server's own cgroup (see the script's
header). ``python -m labapp.healthcheck [PORT]`` runs the same script, for tests and
for checking a server by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: The healthcheck script (bash); in the image it is ``/srv/app/labapp/healthcheck.sh``.
SCRIPT = Path(__file__).with_name("healthcheck.sh")


def main(argv: list[str] | None = None) -> int:
    """Run :data:`SCRIPT` with bash: 0 if ``http://127.0.0.1:PORT/healthz`` answers 200 within 2 s, else 1.

    :param argv: ``[PORT]`` (default: ``$SERVERLAB_PORT``, else 8000); ``None``: ``sys.argv[1:]``.
    :return: the script's exit status (1 with an ``unhealthy: ...`` line on stderr when not healthy).
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        done = subprocess.run(["bash", str(SCRIPT), *args[:1]], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1
    if done.stderr:
        print(done.stderr.rstrip(), file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
