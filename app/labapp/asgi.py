"""ASGI entry point: ``labapp.asgi:app`` for uvicorn and Granian's ``--interface asgi``.

The same Flask app as :mod:`labapp.wsgi`, wrapped as Flask's documentation deploys it
under an ASGI server ("ASGI" deployment page): asgiref's ``WsgiToAsgi``.

**What the adapter does with threads.** ``WsgiToAsgi`` runs each request's WSGI call
through asgiref's ``sync_to_async`` with its default ``thread_sensitive=True``. Outside a
``ThreadSensitiveContext`` (which WsgiToAsgi never opens) that is asgiref's
``SyncToAsync.single_thread_executor``: **one** thread per process, shared by every
request the process serves, whatever the server's event loop could accept. Its size is
not configurable: the ``ASGI_THREADS`` variable was removed in asgiref 3.6 and only ever
sized the loop's default executor, which ``thread_sensitive=True`` does not use. So an
ASGI variant has ``workers × ADAPTER_THREADS`` slots. An ``async def`` Flask view (the
``io-async`` workload) gains nothing here either: Flask calls it through asgiref's
``async_to_sync``, which, inside that thread, schedules the coroutine on the server's
event loop and blocks the thread until it returns.

**Bounded bodies.** ``WsgiToAsgi`` reads the whole request body (into a spooled
temporary file) before the app runs, and neither uvicorn nor Granian bounds a body, so
the app's own 413 would come only after the last byte. :class:`BoundedBody` reads at
most ``MAX_BODY_BYTES + 1`` bytes: beyond that (declared or, when chunked, as read) it
hands the app the request without its body and the length it saw, so the app answers
its own 413, and the response says ``Connection: close`` (the rest is never read). A
body the server cannot de-frame (its ``receive`` raises, or reports a disconnect before
the body's end, as Granian does) gets a 400 shaped like the app's own body errors. A
body within the limit reaches the app with its ``Content-Length`` (a chunked one too:
WsgiToAsgi sets no ``wsgi.input_terminated``, so Werkzeug would otherwise read a
chunked body as empty).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any, Awaitable, Callable, MutableMapping

from asgiref.wsgi import WsgiToAsgi

from labapp import MAX_BODY_BYTES
from labapp.wsgi import app as wsgi_app

#: The largest request head (request line plus headers) passed on, in bytes: 8 KiB, as the
#: other variants (``servers/uvicorn-wsgi.toml``'s ``[headers]``). uvicorn's h11 bounds only a
#: head still incomplete in its buffer, so a whole head that arrives in one read (up to 64 KiB)
#: would pass; beyond this the request line gets 414 and the head 431, as JSON.
MAX_HEAD_BYTES = 8192
#: Threads per process that run the WSGI app under ``WsgiToAsgi`` (asgiref's single-thread
#: executor; not configurable). Recorded as the ASGI variants' ``threads``.
ADAPTER_THREADS = 1

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BoundedBody:
    """ASGI middleware: read at most ``limit + 1`` body bytes, refuse heads over ``head_limit``,
    run each request in a fresh context; answer lifespan events.

    :param app: the ASGI app to call (here ``WsgiToAsgi(labapp.wsgi.app)``).
    :param limit: the largest body passed on, in bytes (default :data:`labapp.MAX_BODY_BYTES`).
    :param head_limit: the largest request head passed on, in bytes (default :data:`MAX_HEAD_BYTES`).
    :raises ValueError: if a limit is negative.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, head_limit: int = MAX_HEAD_BYTES) -> None:
        if limit < 0 or head_limit < 0:
            raise ValueError(f"limit must be >= 0 bytes, got {limit if limit < 0 else head_limit}")
        self.app = app
        self.limit = limit
        self.head_limit = head_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope (``http`` or ``lifespan``; ``websocket`` is closed)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})  # the lab serves no websockets
            return
        line, head = _head_sizes(scope)
        if head > self.head_limit:
            status, what = (414, "request line (URL)") if line > self.head_limit else (431, "request head")
            await _refuse(send, status, f"the {what} is larger than the limit of {self.head_limit} bytes")
            return
        declared = _declared_length(scope)
        body = bytearray()
        over = declared is not None and declared > self.limit
        while not over:
            try:
                message = await receive()
            except Exception as err:  # noqa: BLE001  the server could not read the body (broken framing)
                await _refuse_unreadable(send, type(err).__name__)
                return
            if message["type"] == "http.disconnect":
                # The body ended early: the client went away, or the server gave up on its framing
                # (Granian says so with a disconnect, then answers 500 to an app that sends nothing).
                await _refuse_unreadable(send, "the connection ended before the body did")
                return
            body += message.get("body", b"")
            over = len(body) > self.limit
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-length", b"transfer-encoding")]
        length = max(declared or 0, len(body)) if over else len(body)
        if over or body or len(headers) < len(scope["headers"]):
            headers.append((b"content-length", str(length).encode("ascii")))
        passed = bytes(body) if not over else b""
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": passed, "more_body": False}
            return await receive()  # after the body: the server's http.disconnect

        async def closing_send(message: Message) -> None:
            if over and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        # A fresh context per request: asgiref's AsyncToSync(send) leaves its CurrentThreadExecutor in the
        # context uvicorn schedules a kept-alive connection's next request from, and that request's
        # sync_to_async then submits to the finished executor ("CurrentThreadExecutor already quit or is
        # broken", a 500; asgiref issue 491's kind). Cancelling this task cancels the inner one.
        await asyncio.get_running_loop().create_task(self.app({**scope, "headers": headers}, replay, closing_send),
                                                     context=contextvars.Context())

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        """Acknowledge startup and shutdown (the app has nothing to set up)."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _head_sizes(scope: Scope) -> tuple[int, int]:
    """``(request line bytes, whole head bytes)`` of an HTTP scope, as they came on the wire."""
    query = scope.get("query_string") or b""
    target = len(scope.get("raw_path") or scope["path"].encode("utf-8")) + (len(query) + 1 if query else 0)
    line = len(scope["method"]) + 1 + target + len(" HTTP/1.1\r\n")
    return line, line + sum(len(key) + len(value) + 4 for key, value in scope.get("headers", ()))


async def _refuse(send: Send, status: int, error: str) -> None:
    """Answer ``status`` with the app's error shape (``{"error", "status"}``) and close the connection."""
    body = json.dumps({"error": error, "status": status}, sort_keys=True).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def _refuse_unreadable(send: Send, why: str) -> None:
    """Answer 400 as the app's own body errors read (``{"error", "status"}``), closing the connection.

    For a body the server could not de-frame (its ``receive`` raised, or reported a disconnect
    before the body's end); the app never saw it. A client that is really gone never reads the
    answer: a failed send is ignored.

    :param why: what went wrong, in the error message (an exception's class name, or a phrase).
    """
    try:
        await _refuse(send, 400, f"the request body could not be read: cut short or badly chunked ({why})")
    except Exception:  # noqa: BLE001  the connection is gone; nobody is waiting for this answer
        pass


def _declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` as an integer, ``None`` when absent or not digits."""
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) <= 18 else None
    return None


#: The app the ASGI variants serve: the Flask app through WsgiToAsgi, behind :class:`BoundedBody`.
app = BoundedBody(WsgiToAsgi(wsgi_app))
#: The bare adapter, as Flask's ASGI deployment page writes it (no body bound, no fresh context): not
#: served by any variant; tests/test_asgi_variants.py serves it to show why :class:`BoundedBody` exists.
bare = WsgiToAsgi(wsgi_app)
