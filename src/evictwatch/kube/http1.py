"""A small keep-alive HTTP/1.1 client for plain request/response calls to the API server.

The webhook's record write is on the eviction's path: the API server holds the eviction open
until the write has come back. Through aiohttp's client, each call ran about 440 Python
function calls of request and response objects, cookie jar, timers and header multidicts; on
the project machine that made an interleaved create 0.6 to 0.75 ms slower than this client, which
writes the request bytes and parses the answer with ``bytes.find`` (bench/README.md).

What it speaks is what the API server answers: ``Content-Length`` or ``chunked`` bodies, no
compression (we send no ``Accept-Encoding``), ``Connection: close`` honoured. One request per
connection at a time; idle connections are kept (last used first) and reused, up to ``size``
at once, for at most :data:`IDLE_SECONDS` (the API server drops them at 90 s). A server's close
of an idle connection is seen when it happens, and the connection is dropped then. If a close
still races a call (no byte of the answer came back), only an idempotent call is sent again,
as Go's client does: a POST or PATCH may have been applied before the server went away, and
sending it twice would count an eviction attempt twice. A connection that fails, times out or
is cancelled mid-call is closed, never reused, so a late answer can never be read as the next
call's. The request target is percent-encoded where it holds anything but URI characters, so
a name from a request (an Eviction's Pod name is not validated before webhooks run) can never
split the request. Watches stay on aiohttp (:meth:`JsonApi.stream`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

MAX_HEAD = 64 * 1024
"""Largest status line and headers we accept; the API server's are a few hundred bytes."""

IDLE_SECONDS = 60.0
"""An idle connection older than this is closed rather than reused: the API server closes idle
connections after 90 s, and a call must not race that close."""

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods sent again when a reused connection closed without answering (Go's rule)."""

_URI_SAFE = "/?#[]@!$&'()*+,;=:%-._~"
"""RFC 3986 reserved and unreserved characters, and ``%`` (escapes stay as they are)."""


class ProtocolError(ConnectionError):
    """The server's bytes are not an HTTP/1.1 answer we understand."""


class ServerClosed(ConnectionError):
    """The connection ended before any byte of the answer came back. The server may still have
    read and applied the call, so only an idempotent one is safe to send again."""


class ConnectFailed(ConnectionError):
    """No connection could be opened: the call was never sent, so it is safe to send again."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    """Lower-case names; a repeated header keeps its last value (enough for what we read)."""
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (TLS) connection; parses one answer at a time as its bytes arrive."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Reply] | None = None
        self._head: tuple[int, dict[str, str]] | None = None
        self._body_start = 0
        self._chunks = bytearray()
        self._scan = 0  # where the next chunk header starts, in ``_buffer``
        self.reusable = True
        self.idle_since = 0.0

    # ---- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            self.reusable = False  # bytes nobody asked for: do not trust this connection
            return
        try:
            reply = self._parse()
        except ProtocolError as error:
            self.reusable = False
            self._waiter.set_exception(error)
            return
        if reply is not None:
            self._waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._on_lost(self)
        if self._waiter is not None and not self._waiter.done():
            if not self._buffer and self._head is None:
                self._waiter.set_exception(ServerClosed("the server closed the connection"))
            elif self._head is not None and self._until_close():
                self._waiter.set_result(self._finish(bytes(self._buffer[self._body_start :]), None))
            else:
                self._waiter.set_exception(ConnectionError("the connection ended mid-answer"))

    # ---- one call -------------------------------------------------------------------------
    async def call(self, data: bytes) -> Reply:
        assert self.transport is not None
        self._buffer.clear()
        self._head = None
        self._chunks.clear()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()

    # ---- parsing --------------------------------------------------------------------------
    def _parse(self) -> Reply | None:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise ProtocolError(f"no end of headers within {MAX_HEAD} bytes")
                return None
            self._head = _parse_head(bytes(self._buffer[:end]))
            self._body_start = self._scan = end + 4
        status, headers = self._head
        if 100 <= status < 200:  # we never send Expect, so no interim answer is due
            raise ProtocolError(f"unexpected interim answer {status}")
        if status in (204, 304):
            return self._finish(b"", self._body_start)
        if _chunked(headers):
            return self._parse_chunked()
        length = headers.get("content-length")
        if length is None:
            return None  # the body runs until the server closes (connection_lost finishes it)
        try:
            size = int(length)
        except ValueError:
            raise ProtocolError(f"bad Content-Length {length!r}") from None
        if size < 0:
            raise ProtocolError(f"bad Content-Length {length!r}")
        end = self._body_start + size
        if len(self._buffer) < end:
            return None
        return self._finish(bytes(self._buffer[self._body_start : end]), end)

    def _parse_chunked(self) -> Reply | None:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n", self._scan)
            if line_end < 0:
                return None
            size_text = bytes(buffer[self._scan : line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}")
            if size == 0:
                end = buffer.find(b"\r\n\r\n", line_end)  # after the trailers (none, usually)
                if end < 0:
                    return None
                return self._finish(bytes(self._chunks), end + 4)
            data_end = line_end + 2 + size
            if len(buffer) < data_end + 2:
                return None
            if buffer[data_end : data_end + 2] != b"\r\n":
                raise ProtocolError(f"a chunk of {size} bytes is not followed by CR LF")
            self._chunks += buffer[line_end + 2 : data_end]
            self._scan = data_end + 2

    def _until_close(self) -> bool:
        assert self._head is not None
        headers = self._head[1]
        return "content-length" not in headers and not _chunked(headers)

    def _finish(self, body: bytes, end: int | None) -> Reply:
        """The answer, given its body and where it ends in the buffer (None: at the close)."""
        assert self._head is not None
        status, headers = self._head
        if end is None or end != len(self._buffer) or headers.get("connection", "").lower() == "close":
            self.reusable = False  # delimited by the close, followed by stray bytes, or announced
        return Reply(status, headers, body)


def _chunked(headers: Mapping[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _request_target(target: str) -> str:
    """``target`` with every character that may not appear in a request line percent-encoded
    (spaces, control characters such as CR and LF, anything beyond ASCII as UTF-8)."""
    if target.isascii() and target.isprintable() and " " not in target:
        return target
    return quote(target, safe=_URI_SAFE)


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


class Http1Pool:
    """Keep-alive connections to one server; share one per process."""

    def __init__(
        self,
        base_url: str,
        ssl_context: ssl.SSLContext | None,
        *,
        size: int = 256,
        timeout: float = 10.0,
        socket_options: tuple[tuple[int, int, int], ...] = (),
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) server URL: {base_url!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl = ssl_context if url.scheme == "https" else None
        self._prefix = url.path.rstrip("/")
        self._authority = url.netloc.rpartition("@")[2]
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)
        self._timeout = timeout
        self._socket_options = socket_options
        self._open: set[_Connection] = set()
        self._closed = False
        self.connections_made = 0
        """How many connections were opened so far (tests read it to see reuse)."""

    async def request(
        self, method: str, target: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """Send ``method target`` (a path with its query, under the server URL's path).

        Raises :class:`ConnectFailed` when no connection could be opened (the call was not
        sent), ``TimeoutError`` past the pool's timeout (waiting for a connection included),
        and another ``ConnectionError`` when the connection failed after the call was sent.
        """
        head = [f"{method} {self._prefix}{_request_target(target)} HTTP/1.1\r\nHost: {self._authority}\r\n"]
        for name, value in (headers or {}).items():
            if any(c in value for c in "\r\n\0") or any(c in name for c in " :\r\n\0"):
                raise ValueError(f"header {name!r} holds a character a header may not hold")
            head.append(f"{name}: {value}\r\n")
        head.append(f"Content-Length: {len(body) if body else 0}\r\n\r\n")
        data = "".join(head).encode("latin-1") + (body or b"")
        replayable = method.upper() in IDEMPOTENT
        async with asyncio.timeout(self._timeout), self._slots:
            while connection := self._reusable():
                try:
                    return await self._call(connection, data)
                except ServerClosed:
                    if not replayable:
                        raise
                    # closed as we sent: nothing was answered and the call may be repeated
            return await self._call(await self._connect(), data)

    def _reusable(self) -> _Connection | None:
        """The most recently used idle connection that may still be used; closes stale ones."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.reusable and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
            self._forget(connection)
        return None

    async def _call(self, connection: _Connection, data: bytes) -> Reply:
        try:
            reply = await connection.call(data)
        except BaseException:
            connection.close()  # mid-call failure or cancellation: never reuse it
            self._forget(connection)
            raise
        if connection.reusable and not connection.closed and not self._closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
        else:
            connection.close()
            self._forget(connection)
        return reply

    def _forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    async def _connect(self) -> _Connection:
        if self._closed:
            raise ConnectFailed("the pool is closed")
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(self._forget),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        except OSError as error:  # refused, unreachable, TLS handshake failed
            raise ConnectFailed(f"cannot connect to {self._authority}: {error}") from error
        if self._closed:  # closed while we were connecting
            connection.close()
            raise ConnectFailed("the pool is closed")
        sock = connection.transport.get_extra_info("socket") if connection.transport else None
        if sock is not None:
            for level, option, value in self._socket_options:
                sock.setsockopt(level, option, value)
        self.connections_made += 1
        self._open.add(connection)
        return connection

    async def close(self) -> None:
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks


def keepalive_options(idle: int, interval: int, probes: int) -> tuple[tuple[int, int, int], ...]:
    """``setsockopt`` triples for TCP keepalive where the platform has them."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", probes)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return tuple(options)
