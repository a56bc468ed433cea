"""Every call to the API server, as plain JSON over one aiohttp connection pool.

One HTTP stack for everything: calls, list pages and watch streams share one
``aiohttp.ClientSession`` per API server (the webhook is served by aiohttp too), with the
credentials of :mod:`.credentials`. Objects stay plain dicts: the hot paths (the webhook's
record write, the watches of Pods and Events) would spend more on typed decoding than on the
call. Errors are ours (:mod:`.errors`). Why aiohttp, by measurement, is in docs/DESIGN.md.

Only a call that was never sent (no connection) or an idempotent one (GET, PUT, DELETE) is
sent again after a connection failure: a create or a JSON Patch that may have been applied is
not, since it would count an eviction attempt twice (Go's client has the same rule).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from yarl import URL

from .credentials import Credentials
from .errors import error_for

POOL_SIZE = 256
"""Connections to the API server at most (in a storm of 2,000 evictions 64 were the bottleneck)."""

CALL_TIMEOUT = 10.0
"""Seconds a call may take, waiting for a connection included."""

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

KEEPALIVE_IDLE = 30
"""Seconds of silence before TCP keepalive probes start: client-go's dialer uses 30 s too."""
KEEPALIVE_INTERVAL = 10
KEEPALIVE_PROBES = 3


def keepalive_options() -> list[tuple[int, int, int]]:
    """TCP keepalive for every connection to the API server.

    A watch whose server vanished without closing the connection (a node or load balancer
    gone) then fails after about a minute (30 s idle + 3 probes 10 s apart) instead of at the
    read timeout, five minutes later; until it fails, a cache still believes its stream is live.
    """
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


def keepalive_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """A client socket with keepalive on (aiohttp's ``socket_factory``)."""
    sock = socket.socket(family=addr_info[0], type=addr_info[1], proto=addr_info[2])
    for level, option, value in keepalive_options():
        sock.setsockopt(level, option, value)
    return sock


def single_config(source: Any) -> SingleConfig:
    """The one cluster and user to talk to, from a KubeConfig, a SingleConfig or a lightkube client."""
    if isinstance(source, SingleConfig):
        return source
    if isinstance(source, KubeConfig):
        chosen = source.get()
        if chosen is None:
            raise ValueError("the kubeconfig names no current context")
        return chosen
    config = getattr(source, "config", None)  # a lightkube client (tests, users' own code)
    if isinstance(config, SingleConfig):
        return config
    raise TypeError(f"cannot take API server settings from {type(source).__name__}")


class JsonApi:
    """GET, write and watch JSON documents by API path; share one per process (it holds the pool)."""

    def __init__(
        self,
        source: Any,
        *,
        pool_size: int = POOL_SIZE,
        timeout: float = CALL_TIMEOUT,
        user_agent: str = "evictwatch",
    ) -> None:
        config = single_config(source)
        self.user_agent = user_agent
        """Sent with every call: the API server's audit log tells our calls (and which replica's) apart."""
        self.config = config
        self.credentials = Credentials.from_config(config)
        self._base = config.cluster.server.rstrip("/")
        self._pool_size = pool_size
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def base(self) -> str:
        """The API server's URL, without a trailing slash."""
        return self._base

    @property
    def namespace(self) -> str:
        """The kubeconfig context's namespace (``default`` when it names none)."""
        return self.config.namespace

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ssl_option: ssl.SSLContext | bool = self.credentials.context or False
            connector = aiohttp.TCPConnector(
                ssl=ssl_option,
                limit=self._pool_size,
                keepalive_timeout=60,  # the API server closes idle connections at 90 s
                socket_factory=keepalive_socket,
            )
            # No Accept-Encoding: the API server gzips large lists and watch streams when asked,
            # which costs CPU on both sides of a connection that stays inside the cluster.
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent", "Accept-Encoding")
            )
        return self._session

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        authorization = await self.credentials.header()
        if authorization is not None:
            headers["Authorization"] = authorization
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    def _url(self, path: str, params: dict[str, str] | None) -> URL:
        # yarl quotes what is not URI characters (a CR LF in an Eviction's unvalidated Pod name
        # can never split a request) and keeps the callers' own percent-escapes.
        return URL(self._base + path + (f"?{urlencode(params)}" if params else ""))

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        decode: Callable[[bytes], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One call; the answer's JSON, :class:`ApiError` for a 4xx/5xx, ConnectionError for none.

        ``decode`` reads the answer in place of ``json.loads`` (a list page through a slim
        schema of :mod:`.slim`)."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        url = self._url(path, params)
        for retry in (False, True):
            headers = await self._headers(content_type if data is not None else None)
            try:
                async with self._http().request(
                    method, url, data=data, headers=headers, timeout=self._timeout
                ) as reply:
                    content = await reply.read()
                    status = reply.status
            except TimeoutError as error:
                raise ConnectionError(f"{method} {path}: no answer within {self._timeout.total} s") from error
            except aiohttp.ClientError as error:
                never_sent = isinstance(error, aiohttp.ClientConnectorError)
                if not retry and (never_sent or method in IDEMPOTENT):
                    continue
                raise ConnectionError(f"{method} {path}: {type(error).__name__}: {error}") from error
            if status == 401 and not retry and self.credentials.invalidate():
                continue  # a rotated token file or an expired exec credential: fetch it again
            break
        if status >= 400:
            raise error_for(status, content, f"{method} {path}: HTTP {status}")
        if decode is not None:
            return decode(content)
        result: dict[str, Any] = json.loads(content)
        return result

    async def list_items(
        self, path: str, params: dict[str, str] | None = None, *, page_size: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a collection, page by page (``limit``/``continue``)."""
        query = {**(params or {}), "limit": str(page_size)}
        while True:
            page = await self.request("GET", path, params=query)
            for item in page.get("items") or []:
                yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            query["continue"] = token

    @contextlib.asynccontextmanager
    async def stream(self, path: str, *, read_timeout: float) -> AsyncIterator[AsyncIterator[bytes]]:
        """GET ``path`` (with its query) as a watch stream: entered once the server has answered
        200 (an error status raises here), it gives the body line by line, and closes the
        response on the way out, however that happens.

        Lines are split by hand over raw chunks: aiohttp's own line reader refuses lines over
        its buffer size (64 KiB), and one JSON line holds a whole object, which may be larger.
        """
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
        try:
            async with self._http().get(
                self._url(path, None), headers=await self._headers(None), timeout=timeout
            ) as reply:
                if reply.status >= 400:
                    if reply.status == 401:
                        self.credentials.invalidate()  # the caller's reconnect fetches it again
                    raise error_for(reply.status, await reply.read(), f"GET {path}: HTTP {reply.status}")
                yield _lines(reply.content)
        except aiohttp.ClientError as error:
            raise ConnectionError(f"GET {path}: {type(error).__name__}: {error}") from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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


__all__ = ["JsonApi", "keepalive_socket"]
