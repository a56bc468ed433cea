"""A tiny round-robin TCP proxy on 127.0.0.1: several webhook replicas behind one URL.

It does what a Kubernetes Service (kube-proxy) does for the API server's webhook calls:
each new connection goes to the next backend in turn; a backend that refuses the
connection is skipped (as an endpoint that fails its readiness probe is taken out), so a
replica that died does not make every other connection fail. TLS passes through untouched:
the replicas terminate it, with the certificate the webhook configuration trusts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("evictwatch.testing.tcpproxy")

Backend = tuple[str, int]


@dataclass
class TcpProxy:
    """Start with :meth:`start`, stop with :meth:`stop`; :attr:`connections` counts per backend."""

    backends: list[Backend]
    host: str = "127.0.0.1"
    port: int = 0
    connect_timeout: float = 2.0
    connections: Counter[Backend] = field(default_factory=Counter)
    refused: Counter[Backend] = field(default_factory=Counter)
    _server: asyncio.Server | None = field(default=None, init=False)
    _next: int = field(default=0, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def _order(self) -> list[Backend]:
        """Every backend once, starting with the next one in turn."""
        if not self.backends:
            return []
        start = self._next % len(self.backends)
        self._next += 1
        return self.backends[start:] + self.backends[:start]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for backend in self._order():
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(*backend), self.connect_timeout)
            except (OSError, TimeoutError):
                self.refused[backend] += 1
                continue
            self.connections[backend] += 1
            break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                end.close()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy bytes until EOF (then half-close the far side) or an error (then close it)."""
    try:
        while True:
            data = await source.read(65536)
            if not data:
                break
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        sink.close()
