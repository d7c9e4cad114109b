"""Run the app on Werkzeug's development server, the way ``flask run`` does, minus the risks.

``python -m labapp.devserver --port 8000 [--threaded]``. The debugger and the
reloader are never enabled, and per-request logging is off (the lab's fairness
rule: no server pays for logging).
"""

from __future__ import annotations

import argparse

from werkzeug.serving import WSGIRequestHandler, run_simple


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with the per-request access log line turned off."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:  # noqa: D401
        """Do nothing: access logging is off for every server in the lab."""


def main(argv: list[str] | None = None) -> None:
    """Parse ``--host/--port/--threaded`` and serve ``labapp.wsgi:app`` until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0", help="bind address (default: 0.0.0.0, inside a container)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threaded", action="store_true", help="one thread per connection (flask run's default)")
    args = parser.parse_args(argv)
    from labapp.wsgi import app

    run_simple(
        args.host,
        args.port,
        app,
        threaded=args.threaded,
        processes=1,
        use_debugger=False,
        use_reloader=False,
        request_handler=QuietRequestHandler,
    )


if __name__ == "__main__":
    main()
