"""A TCP forwarder: the Swarm stack's web UI on the loadgen node's 127.0.0.1 only.

Swarm cannot publish a service's port on one address: ingress and host mode both listen
on every interface of the node (its port config has no host address; moby/moby#26696,
#32299). The stack (:mod:`serverlab.stack`) therefore publishes nothing, and this
forwarder runs in a plain container on the stack's attachable overlay network, published
the way ``docker run`` can, on 127.0.0.1::

    docker run -d --rm --name serverlab-ui --network serverlab_lab -p 127.0.0.1:8089:8089 \\
        serverlab:latest python -m serverlab.forward --to locust-master:8089

It copies bytes both ways and nothing else (the Host, Origin and Referer headers the
browser sends reach the UI's same-origin guard unchanged). At most ``--max-connections``
connections at a time (others are closed at once); a connection idle for
``--idle-timeout`` seconds is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

#: Bounds on what the forwarder accepts (a browser polling the UI needs a handful).
MAX_CONNECTIONS = (1, 1024)
IDLE_TIMEOUT_S = (1.0, 3600.0)
CHUNK = 64 * 1024


def parse_target(text: str) -> tuple[str, int]:
    """``"locust-master:8089"`` → ``("locust-master", 8089)``.

    :raises argparse.ArgumentTypeError: without a ``host:port`` or with a port outside 1..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port in 1..65535, not {text!r}")
    return host, int(port)


def _bounded(kind: type, low: float, high: float):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; expected {low:g}..{high:g}")
        return value
    return parse


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle: float) -> None:
    try:
        while data := await asyncio.wait_for(reader.read(CHUNK), idle):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def serve(listen_port: int, target: tuple[str, int], max_connections: int, idle: float,
                ready: asyncio.Event | None = None) -> None:
    """Accept on ``0.0.0.0:listen_port`` (inside the container) and forward each connection to ``target``.

    :param listen_port: the port to listen on, 1..65535 (0: any free port, for tests).
    :param target: ``(host, port)`` to connect to for each accepted connection.
    :param max_connections: connections forwarded at once; one more is closed unanswered.
    :param idle: seconds without data in one direction after which a connection is closed.
    :param ready: set once listening (tests); the bound port is then in ``ready.port``.
    :raises OSError: if the port cannot be bound. Runs until cancelled.
    """
    open_now = 0

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        if open_now >= max_connections:
            client_writer.close()
            return
        open_now += 1
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(*target), idle)
            except (OSError, asyncio.TimeoutError) as err:
                print(f"forward: cannot reach {target[0]}:{target[1]}: {err or 'timed out'}", file=sys.stderr)
                client_writer.close()
                return
            await asyncio.gather(_pipe(client_reader, upstream_writer, idle),
                                 _pipe(upstream_reader, client_writer, idle))
        finally:
            open_now -= 1

    server = await asyncio.start_server(handle, "0.0.0.0", listen_port)
    if ready is not None:
        ready.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        ready.set()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """``python -m serverlab.forward --to HOST:PORT [--listen PORT]``; exits 2 on a bad argument."""
    parser = argparse.ArgumentParser(prog="python -m serverlab.forward",
                                     description="Forward TCP connections from a port to HOST:PORT "
                                                 "(the Swarm stack's web UI on 127.0.0.1).")
    parser.add_argument("--to", type=parse_target, required=True, metavar="HOST:PORT",
                        help="where to forward, e.g. locust-master:8089")
    parser.add_argument("--listen", type=_bounded(int, 1, 65535), default=8089, metavar="PORT",
                        help="the port to listen on inside the container (default 8089)")
    parser.add_argument("--max-connections", type=_bounded(int, *MAX_CONNECTIONS), default=64, metavar="N",
                        help=f"connections at once, {MAX_CONNECTIONS[0]}..{MAX_CONNECTIONS[1]} (default 64)")
    parser.add_argument("--idle-timeout", type=_bounded(float, *IDLE_TIMEOUT_S), default=300.0, metavar="S",
                        help=f"close a connection idle this long, {IDLE_TIMEOUT_S[0]:g}..{IDLE_TIMEOUT_S[1]:g} s "
                             "(default 300)")
    args = parser.parse_args(argv)
    print(f"forward: 0.0.0.0:{args.listen} -> {args.to[0]}:{args.to[1]}", flush=True)
    try:
        asyncio.run(serve(args.listen, args.to, args.max_connections, args.idle_timeout))
    except KeyboardInterrupt:
        return 0
    except OSError as err:
        print(f"error: cannot listen on port {args.listen}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
