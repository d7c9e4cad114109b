"""serverlab.forward, the loopback door to the Swarm stack's web UI: real sockets on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from serverlab import forward


async def _upstream() -> tuple[asyncio.base_events.Server, int]:
    """A server that answers ``ok: `` and then echoes every byte until the client closes."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok: ")
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _forwarder(target: tuple[str, int], max_connections: int = 4, idle: float = 5.0):
    ready = asyncio.Event()
    task = asyncio.create_task(forward.serve(0, target, max_connections, idle, ready))
    await asyncio.wait_for(ready.wait(), 5)
    return task, ready.port


async def _exchange(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return answer


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the peer closes the connection (EOF or reset) within 5 s without sending anything."""
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


def test_bytes_go_both_ways_unchanged():
    async def scenario():
        upstream, port = await _upstream()
        task, fport = await _forwarder(("127.0.0.1", port))
        try:
            big = b"x" * 200_000 + b"\n"  # more than one read
            assert await _exchange(fport, b"GET / HTTP/1.1\n") == b"ok: GET / HTTP/1.1\n"
            reader, writer = await asyncio.open_connection("127.0.0.1", fport)
            writer.write(big)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(big) + 4), 5) == b"ok: " + big
            writer.close()
        finally:
            task.cancel()
            upstream.close()

    asyncio.run(scenario())


def test_connections_beyond_the_bound_are_closed_unanswered():
    async def scenario():
        upstream, port = await _upstream()
        task, fport = await _forwarder(("127.0.0.1", port), max_connections=1)
        try:
            first_reader, first_writer = await asyncio.open_connection("127.0.0.1", fport)
            first_writer.write(b"one\n")
            assert await asyncio.wait_for(first_reader.readline(), 5) == b"ok: one\n"
            second_reader, second_writer = await asyncio.open_connection("127.0.0.1", fport)
            assert await _closed(second_reader)  # closed, nothing forwarded
            first_writer.close()
            await asyncio.sleep(0.2)
            assert await _exchange(fport, b"three\n") == b"ok: three\n"  # the slot is free again
        finally:
            task.cancel()
            upstream.close()

    asyncio.run(scenario())


def test_an_unreachable_target_closes_the_client():
    async def scenario():
        upstream, port = await _upstream()
        upstream.close()
        await upstream.wait_closed()  # nothing listens on `port` now
        task, fport = await _forwarder(("127.0.0.1", port))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", fport)
            assert await _closed(reader)
            writer.close()
        finally:
            task.cancel()

    asyncio.run(scenario())


def test_an_idle_connection_is_closed():
    async def scenario():
        upstream, port = await _upstream()
        task, fport = await _forwarder(("127.0.0.1", port), idle=1.0)
        try:
            reader, _writer = await asyncio.open_connection("127.0.0.1", fport)
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ok: "  # connected upstream ...
            assert await _closed(reader)  # ... then closed after a second without data
        finally:
            task.cancel()
            upstream.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("argv, expected", [
    (["--to", "locust-master"], "expected HOST:PORT"),
    (["--to", "locust-master:0"], "port in 1..65535"),
    (["--to", "h:1", "--max-connections", "0"], "out of range; expected 1..1024"),
    (["--to", "h:1", "--idle-timeout", "1e400"], "out of range"),
    (["--to", "h:1", "--listen", "x"], "not a number"),
])
def test_bad_arguments_name_the_value_and_the_range(argv, expected, capsys):
    with pytest.raises(SystemExit) as stopped:
        forward.main(argv)
    assert stopped.value.code == 2
    assert expected in capsys.readouterr().err


def test_parse_target():
    assert forward.parse_target("locust-master:8089") == ("locust-master", 8089)
    with pytest.raises(argparse.ArgumentTypeError):
        forward.parse_target(":80")
