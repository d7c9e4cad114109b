"""Chunked request bodies, read the same way under every server, within the app's body limit.

A chunked upload (``Transfer-Encoding: chunked``, no ``Content-Length``) reaches a WSGI
app in one of two ways:

* the server de-chunks it into ``wsgi.input`` and says so with
  ``wsgi.input_terminated`` (Gunicorn, Granian, Waitress; Werkzeug's dev server for
  chunked requests);
* uWSGI's ``--http-socket`` / ``--http11-socket`` hand the app no body at all
  (``wsgi.input`` is empty without a ``Content-Length``); the chunks are read with
  uWSGI's own chunked-input API, ``uwsgi.chunked_read()`` (uWSGI docs, "The Chunked
  input API"), one chunk per call, at most ``--chunked-input-limit`` bytes each
  (default 1 MiB).

Werkzeug bounds a terminated stream by ``MAX_CONTENT_LENGTH`` by *stopping* there: a
longer body came out cut at the limit, and the app answered "not valid JSON" (400)
instead of 413. :class:`ChunkedBodies` reads the de-chunked body itself, at most
``limit + 1`` bytes, so a body over the limit is known to be over it. It runs before
Flask sees the request (a WSGI middleware) for every route, as a declared
``Content-Length`` over the limit is refused on every route: the body is then handed on
as an ordinary one (``wsgi.input`` a buffer, ``CONTENT_LENGTH`` set), or the request is
marked with why it cannot be (:data:`REFUSAL_KEY`) and the app answers 413 or 400.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterable, Iterator

#: The environ key under which a refused chunked body's reason is left for the app:
#: ``(status, message)``, status 413 (over the limit) or 400 (broken or cut short).
REFUSAL_KEY = "labapp.body_refusal"
#: The environ key set to the de-chunked body's length once :class:`ChunkedBodies` read it.
DECHUNKED_KEY = "labapp.dechunked_bytes"
#: Bytes asked of ``wsgi.input`` per read.
READ_BLOCK = 64 * 1024


def is_chunked(environ: dict[str, Any]) -> bool:
    """Whether the request's body is chunked and its length unknown (no ``CONTENT_LENGTH``).

    A ``CONTENT_LENGTH`` beside ``Transfer-Encoding: chunked`` means something in front
    (nginx's ``uwsgi_pass``) already de-chunked the body: it is read by its length.
    """
    encoding = environ.get("HTTP_TRANSFER_ENCODING", "")
    return "chunked" in encoding.lower() and not environ.get("CONTENT_LENGTH")


def _stream_chunks(stream: Any) -> Iterator[bytes]:
    while True:
        data = stream.read(READ_BLOCK)
        if not data:
            return
        yield data


def _uwsgi_chunks() -> Iterator[bytes]:
    import uwsgi  # type: ignore[import-not-found]  # only inside a uWSGI worker

    while True:
        data = uwsgi.chunked_read()
        if not data:
            return
        yield data


def chunk_source(environ: dict[str, Any]) -> Iterable[bytes] | None:
    """The de-chunked pieces of a chunked body, from wherever this server puts them.

    :return: an iterator of byte strings (empty at the end), or ``None`` when this server
        hands the app no way to read a chunked body.
    """
    if environ.get("wsgi.input_terminated"):
        return _stream_chunks(environ["wsgi.input"])
    if "uwsgi.version" in environ:
        return _uwsgi_chunks()
    return None


def read_bounded(chunks: Iterable[bytes], limit: int) -> tuple[bytes, bool]:
    """Read ``chunks`` until they end or more than ``limit`` bytes came.

    :param limit: the largest body accepted, in bytes.
    :return: ``(body, over)``: the whole body and ``False``, or the first bytes read and
        ``True`` once more than ``limit`` bytes arrived (the rest is left unread).
    :raises Exception: whatever the server's stream raises on a broken or cut-short body.
    """
    body = bytearray()
    for data in chunks:
        body += data
        if len(body) > limit:
            return bytes(body[:limit + 1]), True
    return bytes(body), False


class ChunkedBodies:
    """WSGI middleware: read a chunked request body within ``limit`` bytes, for every route.

    :param app: the WSGI app to call (Flask's ``wsgi_app``).
    :param limit: the largest body accepted, in bytes (the app's ``MAX_CONTENT_LENGTH``),
        or a callable returning it (read per request, so config changes apply).

    After it, the app sees a chunked body as one with a ``Content-Length`` (``wsgi.input``
    a buffer of it; :data:`DECHUNKED_KEY` says how long it was), or finds
    ``environ[REFUSAL_KEY] = (status, message)``: 413 over the limit, 400 for broken
    framing or a body cut short, 411 where the server gives no way to read it.
    """

    def __init__(self, app: Callable[..., Any], limit: int | Callable[[], int | None]) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Read the chunked body (if any) into ``environ``, then call the app."""
        encoding = environ.get("HTTP_TRANSFER_ENCODING")  # one lookup on the measured requests
        if encoding and "chunked" in encoding.lower():
            if environ.get("CONTENT_LENGTH"):
                # De-chunked in front, with a length: Werkzeug would see the chunked header,
                # ignore the length and read nothing, so the body is read by its length.
                del environ["HTTP_TRANSFER_ENCODING"]
            else:
                limit = self.limit() if callable(self.limit) else self.limit
                self.dechunk(environ, limit)
        return self.app(environ, start_response)

    @staticmethod
    def dechunk(environ: dict[str, Any], limit: int | None) -> None:
        """Replace a chunked body in ``environ`` by its bytes, or record why it was refused."""
        source = chunk_source(environ)
        if source is None:
            environ[REFUSAL_KEY] = (411, f"this server ({environ.get('SERVER_SOFTWARE') or 'unknown'}) hands the "
                                         "app no chunked request body; send it with a Content-Length")
            return
        try:
            body, over = read_bounded(source, limit if limit is not None else 1 << 62)
        except Exception as err:  # noqa: BLE001 - each server raises its own type for broken framing
            # Werkzeug: OSError("Invalid chunk header"); Gunicorn: its ParseException subclasses
            # or NoMoreData; uWSGI: OSError("unable to receive chunked part"), which also covers a
            # single chunk over --chunked-input-limit and a client that stopped sending.
            environ[REFUSAL_KEY] = (400, f"the chunked request body could not be read: cut short or badly "
                                         f"chunked ({type(err).__name__}: {str(err)[:80]})")
            body, over = b"", False
        if over:
            environ[REFUSAL_KEY] = (413, "")
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ[DECHUNKED_KEY] = len(body)
        environ.pop("wsgi.input_terminated", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
