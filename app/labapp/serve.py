"""Start one server variant in the foreground: ``python -m labapp.serve NAME [--port N]``.

This is the entry point of every server container: it reads the variant's
declaration, applies ``SERVERLAB_WORKERS`` / ``SERVERLAB_THREADS`` overrides,
exports the ``SERVERLAB_*`` facts that ``/lab/info`` reports, runs the user's app's
setup commands if there are any (:func:`labapp.appshim.setup_or_exit`: a failure stops
here with their output) and replaces itself with the server process (``exec``), so
signals reach the server directly.
"""

from __future__ import annotations

import argparse
import os
import sys

from labapp.appshim import setup_or_exit
from labapp.variants import DEFAULT_PORT, VariantError, env_counts, get_variant, load_variants


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and exec the server; returns only on error (exit status 2)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", nargs="?", help="server variant name (a servers/*.toml stem)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SERVERLAB_PORT") or DEFAULT_PORT))
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    args = parser.parse_args(argv)
    try:
        if args.list or not args.variant:
            for variant in load_variants().values():
                print(f"{variant.name:20} {variant.description}")
            return 0 if args.list else 2
        workers, threads = env_counts()
        variant = get_variant(args.variant).with_counts(workers, threads)
    except VariantError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = variant.argv(port=args.port)
    if args.dry_run:
        print(" ".join(command))
        return 0
    os.environ.update(variant.environment())
    setup_or_exit()
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 2  # not reached


if __name__ == "__main__":
    sys.exit(main())
