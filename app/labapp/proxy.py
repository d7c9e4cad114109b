"""Run a proxied variant: nginx in front of an app server, in one container or process group.

``python -m labapp.proxy NAME [--port N] [--host H]`` (what ``Variant.argv`` returns for
a declaration with ``proxy = "nginx"``):

1. makes a private runtime folder (``$SERVERLAB_RUNTIME_DIR``, else the temp dir, else
   ``/dev/shm``: a tmpfs in a read-only container) for nginx's configuration, pid file,
   temp paths and the app server's Unix socket;
2. starts the app server (the declaration's ``command``) on that socket;
3. starts nginx in the foreground (``daemon off``) listening on ``HOST:PORT``, with
   access logging off, errors to stderr, ``worker_processes`` as declared, and the
   upstream reached by ``proxy_pass`` (HTTP/1.1 with a pool of kept-alive upstream
   connections) or ``uwsgi_pass`` (the uwsgi protocol: one connection per request);
4. waits: on SIGTERM/SIGINT it stops both (SIGTERM each, SIGKILL after
   :data:`STOP_TIMEOUT_S`), exits 0; if either exits by itself it stops the other and
   exits 1 naming which one died.

Both processes share the variant's CPU budget: there is no fixed split, the kernel
schedules nginx and the app server inside the same quota, and the lab's CPU figures are
their sum. Worker/thread overrides come from ``SERVERLAB_WORKERS`` / ``SERVERLAB_THREADS``
as for every variant. nginx runs as the invoking user (it never needs root: the port is
above 1024 and every file it writes is in the runtime folder).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labapp.appshim import setup_or_exit
from labapp.variants import DEFAULT_PORT, Variant, VariantError, env_counts, get_variant

#: Seconds to wait for both processes after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 8.0
#: Client connections per nginx worker (each proxied request also holds an upstream one).
WORKER_CONNECTIONS = 1024
#: Idle kept-alive upstream connections each nginx worker caches for ``proxy_pass``.
UPSTREAM_KEEPALIVE = 32
#: Where nginx may be installed (Debian: /usr/sbin, often not on a non-root PATH).
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

#: The uwsgi protocol's variables (the content of Debian's ``/etc/nginx/uwsgi_params``),
#: inlined so the configuration does not depend on where nginx keeps its files.
UWSGI_PARAMS = (
    ("QUERY_STRING", "$query_string"), ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"), ("CONTENT_LENGTH", "$content_length"),
    ("REQUEST_URI", "$request_uri"), ("PATH_INFO", "$document_uri"),
    ("DOCUMENT_ROOT", "$document_root"), ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"), ("HTTPS", "$https if_not_empty"),
    ("REMOTE_ADDR", "$remote_addr"), ("REMOTE_PORT", "$remote_port"),
    ("SERVER_PORT", "$server_port"), ("SERVER_NAME", "$server_name"),
)


class ProxyError(RuntimeError):
    """nginx is missing, the runtime folder cannot be made, or the variant is not proxied."""


def find_nginx() -> str:
    """Return the path of the nginx binary.

    :raises ProxyError: if nginx is not installed (with how to install it).
    """
    found = shutil.which("nginx") or next((path for path in NGINX_CANDIDATES if os.access(path, os.X_OK)), None)
    if not found:
        raise ProxyError("nginx is not installed here (Debian: apt-get install nginx); "
                         "the nginx-* variants need it, the lab image has it")
    return found


def runtime_dir(name: str) -> Path:
    """Create a private (0700) runtime folder for the variant ``name``.

    :raises ProxyError: if no candidate location is writable.
    """
    candidates = [os.environ.get("SERVERLAB_RUNTIME_DIR"), tempfile.gettempdir(), "/dev/shm"]
    for base in filter(None, candidates):
        try:
            return Path(tempfile.mkdtemp(prefix=f"serverlab-{name}-", dir=base))
        except OSError:
            continue
    raise ProxyError(f"no writable runtime folder for nginx (tried {', '.join(filter(None, candidates))})")


def nginx_config(variant: Variant, directory: Path, socket_path: Path, host: str, port: int) -> str:
    """Return the nginx configuration for a proxied ``variant``.

    :param directory: the runtime folder (pid file and temp paths go there).
    :param socket_path: the app server's Unix socket.
    :param host: the address nginx listens on (``0.0.0.0`` in a container).
    :param port: the TCP port nginx listens on.
    :raises ProxyError: if ``variant`` is not proxied by nginx.
    """
    if variant.proxy != "nginx":
        raise ProxyError(f"{variant.name}: not an nginx-proxied variant")
    user = ""
    if os.geteuid() == 0:
        # Only a root master switches users; keep the workers as this user so they can
        # reach the socket in the 0700 runtime folder (never the case in the image: uid 10001).
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n"
    if variant.proxy_protocol == "uwsgi":
        params = "".join(f"            uwsgi_param {key} {value};\n" for key, value in UWSGI_PARAMS)
        upstream = f"    upstream app {{\n        server unix:{socket_path};\n    }}\n"
        location = f"{params}            uwsgi_pass app;\n"
    else:
        upstream = (f"    upstream app {{\n        server unix:{socket_path};\n"
                    f"        keepalive {UPSTREAM_KEEPALIVE};\n"
                    "        keepalive_timeout 4s;   # below gunicorn's --keep-alive 5\n    }\n")
        location = ("            proxy_pass http://app;\n"
                    "            proxy_http_version 1.1;\n"
                    '            proxy_set_header Connection "";\n'
                    "            proxy_set_header Host $http_host;\n"
                    "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n")
    # Request-head limit (the declaration's [headers]): each line must fit one of 4 buffers.
    header_buffers = (f"    large_client_header_buffers 4 {variant.headers.max_bytes};\n"
                      if variant.headers else "")
    temp_paths = "".join(f"    {kind}_temp_path {directory / kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (
        f"# written by labapp.proxy for the {variant.name} variant\n"
        f"{user}"
        "daemon off;\n"
        "master_process on;\n"
        f"worker_processes {variant.proxy_workers};\n"
        f"pid {directory / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        f"events {{\n    worker_connections {WORKER_CONNECTIONS};\n}}\n"
        "http {\n"
        "    access_log off;\n"
        "    server_tokens off;\n"
        "    keepalive_timeout 5s;        # as gunicorn's --keep-alive 5\n"
        "    keepalive_requests 10000;\n"
        f"{header_buffers}"
        f"{temp_paths}"
        f"{upstream}"
        "    server {\n"
        f"        listen {host}:{port} backlog=100;\n"
        "        location / {\n"
        f"{location}"
        "        }\n"
        "    }\n"
        "}\n"
    )


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in processes.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(variant: Variant, host: str = "0.0.0.0", port: int = DEFAULT_PORT) -> int:
    """Start the app server and nginx for ``variant``; return when both have stopped.

    :return: 0 after SIGTERM/SIGINT, 1 if one of them exited by itself.
    :raises ProxyError: if nginx is missing or no runtime folder can be made.
    """
    nginx = find_nginx()
    directory = runtime_dir(variant.name)
    socket_path = directory / "app.sock"
    config = directory / "nginx.conf"
    config.write_text(nginx_config(variant, directory, socket_path, host, port), encoding="utf-8")
    watched = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    processes: dict[str, subprocess.Popen] = {}
    status = 0
    try:
        # Children get the default (unblocked) mask back; they stay in this process group.
        restore = lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)  # noqa: E731
        processes[variant.server] = subprocess.Popen(variant.server_argv(str(socket_path)), preexec_fn=restore)
        processes["nginx"] = subprocess.Popen([nginx, "-p", str(directory), "-c", str(config), "-e", "stderr"],
                                              preexec_fn=restore)
        while True:
            info = signal.sigtimedwait(watched, 60)
            dead = [name for name, proc in processes.items() if proc.poll() is not None]
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                break
            if dead:
                codes = ", ".join(f"{name} exited with status {processes[name].returncode}" for name in dead)
                print(f"error: {variant.name}: {codes}; stopping the rest", file=sys.stderr)
                status = 1
                break
    finally:
        _stop(processes)
        shutil.rmtree(directory, ignore_errors=True)
    return status


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the proxied variant; exit status 2 on a usage or setup error."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", help="a proxied server variant (servers/*.toml with proxy = ...)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SERVERLAB_PORT") or DEFAULT_PORT))
    parser.add_argument("--host", default="0.0.0.0", help="address nginx listens on (default 0.0.0.0)")
    parser.add_argument("--print-config", action="store_true", help="print nginx's configuration and exit")
    args = parser.parse_args(argv)
    try:
        workers, threads = env_counts()
        variant = get_variant(args.variant).with_counts(workers, threads)
        if not variant.proxy:
            raise ProxyError(f"{variant.name} has no proxy; start it with python -m labapp.serve {variant.name}")
        if args.print_config:
            print(nginx_config(variant, Path("/RUNTIME"), Path("/RUNTIME/app.sock"), args.host, args.port), end="")
            return 0
        os.environ.update(variant.environment())
        setup_or_exit()  # the user's app's setup commands, before either process starts
        return run(variant, args.host, args.port)
    except (VariantError, ProxyError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
