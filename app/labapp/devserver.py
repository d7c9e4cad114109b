"""Run the app on Werkzeug's development server, the way ``flask run`` does, minus the risks.

``python -m labapp.devserver --port 8000 [--app MODULE:ATTR] [--threaded [--max-connections N]] [--read-timeout S]
[--max-line-bytes N]`` (``--app`` defaults to the demo app, ``labapp.wsgi:app``; a
``module:factory()`` target is called, as :func:`labapp.appshim.resolve` does for every
server). The debugger and the reloader are never enabled, and per-request logging is off
(the lab's fairness rule: no server pays for logging). A connection that sends nothing for
``--read-timeout`` seconds (default :data:`READ_TIMEOUT_S`) is closed, so idle connections
cannot hold the single-threaded server (or a bounded threaded one) forever. A request line
longer than ``--max-line-bytes`` (default :data:`MAX_LINE_BYTES`, ``http.server``'s own)
gets 414 and a longer header line 431, as Gunicorn answers over its
``--limit-request-line`` / ``--limit-request-field_size``.
"""

from __future__ import annotations

import argparse
import threading
from http import HTTPStatus
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, run_simple

from labapp.appshim import DEFAULT_TARGET, resolve

#: Seconds a connection may stay silent (while the server waits to read a request or
#: its body, or to write a response) before the server closes it.
READ_TIMEOUT_S = 10.0
#: The longest request line and header line accepted by default (bytes, without CRLF):
#: ``http.server``'s own bound (it reads lines of at most 65536 bytes).
MAX_LINE_BYTES = 65536


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with the per-request access log line turned off, a
    :data:`READ_TIMEOUT_S` socket timeout on each connection, and request and header
    lines of at most :attr:`max_line_bytes` bytes (414 and 431 beyond)."""

    timeout = READ_TIMEOUT_S
    max_line_bytes = MAX_LINE_BYTES

    def parse_request(self) -> bool:
        """Parse the request line and headers; answer 414 (request line) or 431 (a header
        line) over :attr:`max_line_bytes` and return ``False``, as ``http.server`` does over its own bound."""
        limit = self.max_line_bytes
        if len(self.raw_requestline.rstrip(b"\r\n")) > limit:
            self.requestline, self.request_version, self.command = "", "", ""
            self.close_connection = True
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, f"Request line over {limit} bytes")
            return False
        if not super().parse_request():
            return False
        for name, value in self.headers.raw_items():
            if len(name) + 2 + len(value) > limit:
                self.close_connection = True
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"Header line over {limit} bytes ({name})")
                return False
        return True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:  # noqa: D401
        """Do nothing: access logging is off for every server in the lab."""


class BoundedThreadedWSGIServer(ThreadedWSGIServer):
    """Werkzeug's thread-per-connection server with at most ``max_connections`` connection
    threads at once. When all are busy the accept loop waits for one to finish, and
    further connections wait in the kernel's listen backlog instead of each getting a
    thread (300 idle connections made 300 threads before).

    :param max_connections: connection threads at most, ``>= 1``.
    :raises ValueError: if ``max_connections < 1``.
    """

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Wait for a free slot, then serve the connection on a new thread."""
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # the thread never started
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection (on its own thread) and give its slot back."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def main(argv: list[str] | None = None) -> None:
    """Parse ``--host/--port/--app/--threaded/--max-connections/--read-timeout/--max-line-bytes``
    and serve the ``--app`` target (default ``labapp.wsgi:app``) until SIGTERM.

    :raises SystemExit: (argparse) for ``--max-connections`` below 0 or without
        ``--threaded``, ``--read-timeout`` outside 1..3600 seconds, or ``--max-line-bytes``
        outside 1024..65536.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default: 0.0.0.0, inside a container)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--app", default=DEFAULT_TARGET,
                        help=f"WSGI target, module:attribute or module:factory() (default: {DEFAULT_TARGET})")
    parser.add_argument("--threaded", action="store_true", help="one thread per connection (flask run's default)")
    parser.add_argument("--max-connections", type=int, default=0,
                        help="with --threaded: connection threads at most (default 0: unbounded, as flask run)")
    parser.add_argument("--read-timeout", type=float, default=READ_TIMEOUT_S,
                        help=f"seconds a silent connection is kept (default {READ_TIMEOUT_S:g}; 1..3600)")
    parser.add_argument("--max-line-bytes", type=int, default=MAX_LINE_BYTES,
                        help=f"longest request line / header line in bytes (default {MAX_LINE_BYTES}; 1024..65536)")
    args = parser.parse_args(argv)
    if not 1024 <= args.max_line_bytes <= MAX_LINE_BYTES:
        parser.error(f"--max-line-bytes must be within 1024..{MAX_LINE_BYTES}, got {args.max_line_bytes}")
    if args.max_connections < 0 or (args.max_connections and not args.threaded):
        parser.error("--max-connections must be >= 0 and needs --threaded")
    if not 1 <= args.read_timeout <= 3600:
        parser.error(f"--read-timeout must be within 1..3600 seconds, got {args.read_timeout:g}")
    app = resolve(args.app)

    handler: type[QuietRequestHandler] = QuietRequestHandler
    if (args.read_timeout, args.max_line_bytes) != (QuietRequestHandler.timeout, QuietRequestHandler.max_line_bytes):
        handler = type("QuietRequestHandler", (QuietRequestHandler,),
                       {"timeout": args.read_timeout, "max_line_bytes": args.max_line_bytes})
    if args.max_connections:
        server = BoundedThreadedWSGIServer(args.host, args.port, app, handler,
                                           max_connections=args.max_connections)
        server.log_startup()
        server.serve_forever()
        return
    run_simple(
        args.host,
        args.port,
        app,
        threaded=args.threaded,
        processes=1,
        use_debugger=False,
        use_reloader=False,
        request_handler=handler,
    )


if __name__ == "__main__":
    main()
