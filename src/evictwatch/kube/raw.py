"""Plain-JSON calls for the webhook's hot path, with the client's identity.

The eviction waits for our answer while the webhook reads the Pod and writes the record, so
these calls must cost as little as possible. Measured on the project machine (bench/README):
a Pod GET took 6.0 ms through lightkube's typed client, 3.5 ms as plain JSON through lightkube's
own httpx2 client, and 1.6 ms through aiohttp; a CPU profile put ~80 % of a recorded review in
the httpx2/httpcore/anyio stack. Calls now go through our own keep-alive HTTP/1.1 client
(:mod:`.http1`), another 0.6 to 0.75 ms faster per record create than aiohttp; watch streams
stay on aiohttp, which also serves the webhook.

:class:`JsonApi` takes the server, TLS context (CA and client certificate) and bearer token from
the same kubeconfig as the lightkube client; a token file (in-cluster, rotated by the kubelet) is
re-read on a 401. Configurations it cannot speak for (exec plugins, basic auth) make it fall back
to lightkube's own httpx2 client, so it works wherever lightkube does. Errors are lightkube's
``ApiError``, so callers handle both paths the same way.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx2
from lightkube import AsyncClient
from lightkube.config.client_adapter import verify_cluster
from lightkube.core.exceptions import ApiError
from lightkube.core.generic_client import transform_exception

from .http1 import IDEMPOTENT, ConnectFailed, Http1Pool, keepalive_options


class JsonApi:
    """GET and write JSON documents by API path; share one per process (it holds a pool)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._session: aiohttp.ClientSession | None = None  # for watch streams
        self._pool: Http1Pool | None = None  # for every other call
        self._token_file: str | None = None
        self._bearer: str | None = None
        config = client.config
        user = config.user
        if user is not None and (user.exec or user.auth_provider or (user.username and user.password)):
            self._fast = False  # an identity only lightkube's client knows how to present
            return
        self._fast = True
        self._base = config.cluster.server.rstrip("/")
        self._ssl: ssl.SSLContext | bool = False
        if self._base.startswith("https"):
            self._ssl = verify_cluster(config.cluster, user, config.abs_file)  # type: ignore[arg-type]
        if user is not None and user.token_file:
            self._token_file = user.token_file
        elif user is not None and user.token:
            self._bearer = f"Bearer {user.token}"

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token_file is not None and self._bearer is None:
            self._bearer = f"Bearer {Path(self._token_file).read_text().strip()}"
        if self._bearer is not None:
            headers["Authorization"] = self._bearer
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    def _stream_session(self) -> aiohttp.ClientSession:
        """The session for watch streams only (calls have their own pool); one stream per connection."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl, limit=POOL_SIZE, keepalive_timeout=60, socket_factory=keepalive_socket
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One call; the answer's JSON, or ``ApiError`` for a 4xx/5xx answer."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if not self._fast:
            return await self._slow(method, path, data, params, content_type)
        target = f"{path}?{urlencode(params)}" if params else path
        for retry in (False, True):
            headers = self._headers(content_type if data is not None else None)
            try:
                reply = await self._pool_for_call().request(method, target, data, headers)
            except TimeoutError as error:
                raise ConnectionError(f"{method} {path}: no answer within {CALL_TIMEOUT:.0f} s") from error
            except OSError as error:  # ConnectionError and the like
                # Once more if the call was never sent (no connection: an API server restarting),
                # or if sending it twice is harmless; a POST or PATCH that may have been applied
                # is not repeated (a create or an attempt would be counted twice).
                if not retry and (isinstance(error, ConnectFailed) or method in IDEMPOTENT):
                    continue
                raise ConnectionError(f"{method} {path}: {type(error).__name__}: {error}") from error
            if reply.status == 401 and self._token_file is not None and not retry:
                self._bearer = None  # rotated by the kubelet: read it again
                continue
            break
        if reply.status >= 400:
            raise _api_error(
                method, self._base + path, reply.status, reply.body, reply.headers.get("content-type", "")
            )
        result: dict[str, Any] = json.loads(reply.body)
        return result

    def _pool_for_call(self) -> Http1Pool:
        if self._pool is None:
            self._pool = Http1Pool(
                self._base,
                self._ssl if isinstance(self._ssl, ssl.SSLContext) else None,
                size=POOL_SIZE,
                timeout=CALL_TIMEOUT,
                socket_options=KEEPALIVE,
            )
        return self._pool

    @property
    def base(self) -> str:
        """The API server's URL, without a trailing slash (only meaningful when :attr:`fast`)."""
        return self._base

    @property
    def fast(self) -> bool:
        """Whether calls go through our own clients (False: lightkube's, for exec plugins and the like)."""
        return self._fast

    @contextlib.asynccontextmanager
    async def stream(self, path: str, *, read_timeout: float) -> AsyncIterator[AsyncIterator[bytes]]:
        """GET ``path`` (with its query) as a watch stream: entered once the server has answered
        200 (an error status raises here), it gives the body line by line, and closes the
        response on the way out, however that happens.

        Lines are split by hand over raw chunks: aiohttp's own line reader refuses lines over
        its buffer size (64 KiB), and one JSON line holds a whole object, which may be larger.
        """
        if not self._fast:
            raise RuntimeError("stream() needs the aiohttp path; use lightkube's client instead")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
        url = self._base + path
        try:
            async with self._stream_session().get(url, headers=self._headers(), timeout=timeout) as reply:
                if reply.status >= 400:
                    if reply.status == 401 and self._token_file is not None:
                        self._bearer = None  # rotated by the kubelet: the caller's retry reads it again
                    content = await reply.read()
                    raise _api_error("GET", url, reply.status, content, reply.headers.get("Content-Type", ""))
                yield _lines(reply.content)
        except aiohttp.ClientError as error:
            raise ConnectionError(f"GET {path}: {type(error).__name__}: {error}") from error

    async def _slow(
        self, method: str, path: str, data: bytes | None, params: dict[str, str] | None, content_type: str
    ) -> dict[str, Any]:
        inner: httpx2.AsyncClient = self.client._client._client
        headers = {"Content-Type": content_type} if data is not None else None
        response = await inner.request(method, path, content=data, params=params, headers=headers)
        if response.status_code >= 400:
            raise _api_error(
                method,
                str(response.request.url),
                response.status_code,
                response.content,
                response.headers.get("Content-Type", ""),
            )
        result: dict[str, Any] = json.loads(response.content)
        return result

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._session is not None:
            await self._session.close()
            self._session = None


POOL_SIZE = 256
"""Connections to the API server at most for calls (in a storm of 2,000 evictions 64 were the
bottleneck: settle p50 63 s, 46 s at 256), and as many again for watches."""

CALL_TIMEOUT = 10.0
"""Seconds a call may take, waiting for a connection included."""

KEEPALIVE_IDLE = 30
"""Seconds of silence before TCP keepalive probes start: client-go's dialer uses 30 s too."""
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 3


KEEPALIVE = keepalive_options(KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES)
"""TCP keepalive for every connection to the API server.

A watch whose server vanished without closing the connection (a node or load balancer gone: a
half-open connection) then fails after about a minute (30 s idle + 3 probes 10 s apart) instead
of at the read timeout, five minutes later; until it fails, the Pod cache still believes its
stream is live. Platforms without the three TCP options keep their own defaults.
"""


def keepalive_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """A client socket with :data:`KEEPALIVE` on (aiohttp's ``socket_factory``, for watches)."""
    family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
    sock = socket.socket(family=family, type=kind, proto=proto)
    for level, option, value in KEEPALIVE:
        sock.setsockopt(level, option, value)
    return sock


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    pending = bytearray()
    async for chunk in content.iter_any():
        pending += chunk
        if b"\n" not in chunk:
            continue
        *complete, rest = pending.split(b"\n")
        pending = bytearray(rest)
        for line in complete:
            yield bytes(line)
    if pending:
        yield bytes(pending)


def status_code(error: BaseException) -> int | None:
    """The HTTP status of an API error, whether lightkube made an ApiError of it or not (an
    answer without a Status body stays an HTTPStatusError)."""
    if isinstance(error, ApiError):
        return int(error.status.code or 0) or None
    if isinstance(error, httpx2.HTTPStatusError):
        return error.response.status_code
    return None


def _api_error(method: str, url: str, status: int, content: bytes, content_type: str) -> Exception:
    """The error lightkube would raise for this answer (an ApiError when it is a Status)."""
    request = httpx2.Request(method, url)
    response = httpx2.Response(
        status, content=content, request=request, headers={"Content-Type": content_type}
    )
    try:
        response.raise_for_status()
    except httpx2.HTTPStatusError as error:
        converted: Exception = transform_exception(error)
        return converted
    return RuntimeError(f"{method} {url}: HTTP {status}")  # pragma: no cover - status >= 400 raises


__all__ = ["ApiError", "JsonApi"]
