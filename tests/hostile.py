"""Hostile HTTP requests over raw sockets, shared by the local and the Docker tests (issue 8).

Real bytes on a real TCP connection: a body far over the app's limit, a JSON body nested
100 000 deep, chunked bodies with broken framing.
"""

from __future__ import annotations

import json
import select
import socket
import time
import urllib.request
from typing import Iterator

#: A body far beyond the app's 1 MiB limit (the size that OOM-killed werkzeug-single), bytes.
HUGE_BODY_BYTES = 200 * 1024 * 1024
#: ``[`` × 100 000: RecursionError in json.loads before issue 8.
NESTED_JSON = b"[" * 100_000
#: Complete chunked bodies whose framing is broken: a size that is not hex; a size
#: longer than the data, so the chunk swallows the terminating ``0`` chunk and what
#: follows is not a chunk size. (Granian's parser accepts a chunk followed by junk
#: instead of CRLF, ``2\r\n{}XX\r\n``, as ``{}``: lenient, so not among these.)
BAD_CHUNKED_BODIES = {
    "non-hex-size": b"zz\r\n{}\r\n0\r\n\r\n",
    "size-too-long": b"5\r\n{}\r\n0\r\n\r\nzz\r\n",
}


def split_address(url: str) -> tuple[str, int]:
    """``http://127.0.0.1:8001`` -> ``("127.0.0.1", 8001)``."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    return host, int(port)


def read_response(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response: ``(status, lower-cased headers, body)``.

    :raises AssertionError: if the connection closes (or ``deadline`` passes) before a
        complete response arrived.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data[:200]!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", -1))
    while length < 0 or len(body) < length:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        body += chunk
    assert length < 0 or len(body) >= length, f"short body: {len(body)} of {length}"
    return int(status_line.split()[1]), headers, body


def raw_request(url: str, request: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` bytes as they are on a new connection and read the response."""
    with socket.create_connection(split_address(url), timeout=timeout) as sock:
        sock.sendall(request)
        return read_response(sock, time.monotonic() + timeout)


def post_json_bytes(url: str, body: bytes, path: str = "/background") -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` with ``Content-Type: application/json`` and a Content-Length."""
    head = (f"POST {path} HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return raw_request(url, head + body)


def post_chunked(url: str, framed_body: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST an already chunk-framed body with ``Transfer-Encoding: chunked``."""
    head = (b"POST /background HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    return raw_request(url, head + framed_body)


def huge_json_document(size: int, block: int = 65536) -> Iterator[bytes]:
    """Yield a valid JSON object of exactly ``size`` bytes in pieces of about ``block``
    bytes: ``{"ms": 0, "pad": [0,0,...,0]}`` (spaces make up the length). Parsed whole it
    costs far more memory than its size (a Python int reference per element).

    :raises ValueError: if ``size`` is too small for the frame.
    """
    head, tail = b'{"ms": 0, "pad": [', b"0]}"
    if size < len(head) + len(tail):
        raise ValueError(f"size must be >= {len(head) + len(tail)}, got {size}")
    yield head
    left = size - len(head) - len(tail)
    zeros = b"0," * (block // 2)
    while left >= len(zeros):
        yield zeros
        left -= len(zeros)
    yield b"0," * (left // 2) + b" " * (left % 2)
    yield tail


def chunk_frame(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body (``<hex size>\\r\\n<data>\\r\\n``); ``b""`` gives the last chunk."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Frame each piece as one chunk, then the terminating zero-size chunk."""
    for piece in pieces:
        if piece:
            yield chunk_frame(piece)
    yield chunk_frame(b"") + b"\r\n"


def post_huge_body(url: str, size: int = HUGE_BODY_BYTES, timeout: float = 60,
                   chunked_body: bool = False) -> tuple[int, dict[str, str], bytes, int]:
    """Announce and start sending a ``size``-byte JSON document (:func:`huge_json_document`) to ``POST /background``, the way
    a careless client would, stopping as soon as the server answers.

    :param chunked_body: send it with ``Transfer-Encoding: chunked`` in 64 KiB chunks (as curl
        does) instead of a ``Content-Length``: the server cannot know its size before reading it.
    :return: ``(status, headers, body, bytes of the body sent)`` (framing included when chunked).
    :raises AssertionError: if no response arrives within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    document = chunked(huge_json_document(size)) if chunked_body else huge_json_document(size)
    framing = "Transfer-Encoding: chunked" if chunked_body else f"Content-Length: {size}"
    sent = 0
    with socket.create_connection(split_address(url), timeout=timeout) as sock:
        sock.sendall((f"POST /background HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
                      f"{framing}\r\n\r\n").encode())
        try:
            pending = b""
            while time.monotonic() < deadline:
                readable, writable, _ = select.select([sock], [sock], [], 1.0)
                if readable:
                    break  # the server answered (or closed) before taking the whole body
                if writable:
                    pending = pending or next(document, b"")
                    if not pending:
                        break  # all sent
                    done = sock.send(pending)
                    sent, pending = sent + done, pending[done:]
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed its side; its answer may already be buffered
        status, headers, body = read_response(sock, deadline)
    return status, headers, body, sent


def healthy(url: str, timeout: float = 30) -> bool:
    """True if ``GET /healthz`` answers ``{"status": "ok"}`` within ``timeout`` seconds (retrying)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                return json.loads(response.read()) == {"status": "ok"}
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def get_with_big_head(url: str, header_bytes: int = 0, path_bytes: int = 0, timeout: float = 30) -> int | None:
    """``GET /`` with one header line (``X-Big: aaa...``) of ``header_bytes`` bytes and/or a
    request line padded to ``path_bytes`` bytes (``/?pad=aaa...``).

    :return: the response status, or ``None`` when the server closed (or reset) the
        connection without answering (uWSGI over its ``--buffer-size``).
    """
    path = "/"
    if path_bytes:
        path = "/?pad=" + "a" * max(0, path_bytes - len("GET /?pad= HTTP/1.1"))
    head = f"GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n"
    if header_bytes:
        head += "X-Big: " + "a" * max(0, header_bytes - len("X-Big: ")) + "\r\n"
    with socket.create_connection(split_address(url), timeout=timeout) as sock:
        try:
            sock.sendall((head + "\r\n").encode())
            sock.settimeout(timeout)
            first = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return None
        if not first:
            return None
        data = first
        while b"\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
        return int(data.split(b"\r\n", 1)[0].split()[1])
