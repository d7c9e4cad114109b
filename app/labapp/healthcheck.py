"""Container healthcheck: exit 0 when ``GET /healthz`` on the local server answers 200.

Slim images have no curl, so the check is Python. ``python -m labapp.healthcheck [PORT]``.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main(argv: list[str] | None = None) -> int:
    """Return 0 if ``http://127.0.0.1:PORT/healthz`` answers 200 within 2 s, else 1."""
    args = sys.argv[1:] if argv is None else argv
    port = args[0] if args else os.environ.get("SERVERLAB_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
