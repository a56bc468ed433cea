"""The hot path's HTTP/1.1 client against a scripted local server: framing, reuse, failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from evictwatch.kube import http1
from evictwatch.kube.http1 import ConnectFailed, Http1Pool, ProtocolError, ServerClosed
from evictwatch.kube.pods import lookup_pod
from evictwatch.kube.raw import JsonApi

Answer = Callable[[bytes, int], Awaitable[list[bytes] | None]]
"""(request bytes, connection number) -> fragments to write, or None to close without answering;
fragments ending with :data:`CLOSE` close the connection after they are written."""

CLOSE = b""


@dataclass
class Server:
    answer: Answer
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    connections: int = 0
    eofs: int = 0
    """Connections the client closed (the server read EOF)."""
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.eofs += 1
                    return
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append((number, request))
                fragments = await self.answer(request, number)
                if fragments is None:
                    return
                for fragment in fragments:
                    writer.write(fragment)
                    await writer.drain()
                if fragments and fragments[-1] is CLOSE:
                    return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(answer: Answer, prefix: str = "") -> AsyncIterator[tuple[Server, Http1Pool]]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.port = port
    pool = Http1Pool(f"http://127.0.0.1:{port}{prefix}", None, timeout=2.0)
    try:
        yield server, pool
    finally:
        await pool.close()
        listener.close()
        await listener.wait_closed()


def ok(body: bytes = b'{"ok":true}', extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


async def test_a_call_sends_a_well_formed_request_and_reads_a_fragmented_answer() -> None:
    async def answer(request: bytes, _: int) -> list[bytes]:
        return byte_by_byte(ok(b'{"kind":"PodEviction"}'))

    async with serving(answer, prefix="/k8s/clusters/c-1") as (server, pool):
        reply = await pool.request(
            "POST", "/apis/x/v1/things?fieldManager=me", b'{"a":1}', {"Content-Type": "application/json"}
        )
    assert reply.status == 201
    assert reply.headers["content-type"] == "application/json"
    assert reply.body == b'{"kind":"PodEviction"}'
    ((_, request),) = server.requests
    head, body = request.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /k8s/clusters/c-1/apis/x/v1/things?fieldManager=me HTTP/1.1"
    assert "Content-Type: application/json" in lines and "Content-Length: 7" in lines
    assert any(line.startswith("Host: 127.0.0.1:") for line in lines)
    assert body == b'{"a":1}'


async def test_chunked_answers_with_extensions_and_trailers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;name=x\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )

    async def answer(_: bytes, __: int) -> list[bytes]:
        return byte_by_byte(chunked)

    async with serving(answer) as (server, pool):
        first = await pool.request("GET", "/a")
        second = await pool.request("GET", "/b")
    assert first.body == second.body == b"hello world"
    assert server.connections == 1  # the trailer was consumed exactly: the connection stayed usable


async def test_sequential_calls_share_one_connection_and_concurrent_ones_do_not() -> None:
    gate = asyncio.Event()

    async def answer(request: bytes, _: int) -> list[bytes]:
        if b"/slow" in request:
            await gate.wait()
        return [ok()]

    async with serving(answer) as (server, pool):
        for _ in range(3):
            await pool.request("GET", "/fast")
        assert (server.connections, pool.connections_made) == (1, 1)
        slow = [asyncio.create_task(pool.request("GET", "/slow")) for _ in range(3)]
        await asyncio.sleep(0.1)
        gate.set()
        assert [r.status for r in await asyncio.gather(*slow)] == [201, 201, 201]
        assert server.connections == 3
        for _ in range(5):  # all three are idle now: no new connection
            await pool.request("GET", "/fast")
        assert pool.connections_made == 3


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_losing_the_call() -> None:
    async def answer(request: bytes, number: int) -> list[bytes] | None:
        return [ok(extra=f"X-Conn: {number}\r\n")]

    async with serving(answer) as (server, pool):
        await pool.request("GET", "/one")
        # The server drops its idle connection (as the API server does after a while).
        server_side_close = asyncio.Event()

        async def close_then_answer(request: bytes, number: int) -> list[bytes] | None:
            if number == 0:
                server_side_close.set()
                return None
            return [ok(extra=f"X-Conn: {number}\r\n")]

        server.answer = close_then_answer
        reply = await pool.request("GET", "/two")
    assert server_side_close.is_set()
    assert reply.headers["x-conn"] == "1"
    assert [request.split(b" ")[1] for _, request in server.requests] == [b"/one", b"/two", b"/two"]
    assert pool.connections_made == 2


async def test_a_post_is_not_sent_again_when_its_connection_closed_unanswered() -> None:
    """The server may have applied it before going away: a second create or JSON Patch would
    count an eviction attempt twice."""

    async def answer(request: bytes, number: int) -> list[bytes] | None:
        return None if request.startswith(b"POST") else [ok()]

    async with serving(answer) as (server, pool):
        await pool.request("GET", "/warm")
        with pytest.raises(ServerClosed):
            await pool.request("POST", "/apis/x/v1/things", b"{}")
    assert [r.split(b" ", 1)[0] for _, r in server.requests] == [b"GET", b"POST"]


async def test_an_idle_connection_past_its_age_is_closed_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def answer(_: bytes, number: int) -> list[bytes]:
        return [ok(extra=f"X-Conn: {number}\r\n")]

    monkeypatch.setattr(http1, "IDLE_SECONDS", 0.05)
    async with serving(answer) as (server, pool):
        await pool.request("GET", "/a")
        await asyncio.sleep(0.1)
        reply = await pool.request("GET", "/b")
        await asyncio.sleep(0.05)
        assert reply.headers["x-conn"] == "1"
        assert server.eofs == 1  # the stale one was closed by the client


async def test_nothing_listening_is_a_connect_failure() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    pool = Http1Pool(f"http://127.0.0.1:{port}", None)
    with pytest.raises(ConnectFailed):
        await pool.request("POST", "/x", b"{}")
    await pool.close()


async def test_a_name_from_a_request_cannot_split_the_request() -> None:
    """An Eviction's Pod name reaches the webhook unvalidated; it goes into a GET's path."""

    async def answer(_: bytes, __: int) -> list[bytes]:
        return [ok()]

    evil = "x HTTP/1.1\r\nX: y\r\n\r\nDELETE /apis/evictwatch.io/v1alpha1/namespaces/n/podevictions/victim"
    async with serving(answer) as (server, pool):
        await pool.request("GET", f"/api/v1/namespaces/n/pods/{evil}é")
        with pytest.raises(ValueError, match="may not hold"):
            await pool.request("GET", "/x", None, {"Authorization": "Bearer t\r\nX-Evil: 1"})
    ((_, request),) = server.requests
    line = request.split(b"\r\n", 1)[0]
    assert line.startswith(b"GET /api/v1/namespaces/n/pods/x%20HTTP/1.1%0D%0AX:%20y%0D%0A%0D%0ADELETE%20")
    assert line.endswith(b"victim%C3%A9 HTTP/1.1")


async def test_the_timeout_covers_waiting_for_a_connection() -> None:
    release = asyncio.Event()

    async def answer(_: bytes, __: int) -> list[bytes]:
        await release.wait()
        return [ok()]

    async with serving(answer) as (_, pool):
        pool._slots = asyncio.Semaphore(1)
        pool._timeout = 30.0
        first = asyncio.create_task(pool.request("GET", "/holds-the-only-slot"))
        await asyncio.sleep(0.05)
        pool._timeout = 0.2
        second = asyncio.create_task(pool.request("GET", "/waits-for-it"))
        done, _ = await asyncio.wait({second}, timeout=5)
        assert second in done, "the wait for a connection had no limit"
        assert isinstance(second.exception(), TimeoutError)
        assert not first.done()
        release.set()
        assert (await first).status == 201


async def test_a_fresh_connection_that_closes_unanswered_is_an_error() -> None:
    async def answer(_: bytes, __: int) -> None:
        return None

    async with serving(answer) as (_, pool):
        with pytest.raises(ServerClosed):
            await pool.request("GET", "/x")


@pytest.mark.parametrize(
    "answer_bytes",
    [
        ok(extra="Connection: close\r\n"),
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",  # delimited by the close
    ],
)
async def test_answers_that_end_the_connection_are_read_and_the_connection_dropped(
    answer_bytes: bytes,
) -> None:
    async def answer(_: bytes, __: int) -> list[bytes] | None:
        return [answer_bytes, CLOSE]

    async with serving(answer) as (server, pool):
        first = await pool.request("GET", "/x")
        await pool.request("GET", "/y")
    assert first.body == answer_bytes.split(b"\r\n\r\n", 1)[1]
    assert pool.connections_made == 2 and server.connections == 2


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    ],
)
async def test_what_is_not_http_is_a_protocol_error_and_the_connection_is_not_reused(garbage: bytes) -> None:
    calls = 0

    async def answer(_: bytes, __: int) -> list[bytes]:
        nonlocal calls
        calls += 1
        return [garbage] if calls == 1 else [ok()]

    async with serving(answer) as (_, pool):
        with pytest.raises(ProtocolError):
            await pool.request("GET", "/x")
        assert (await pool.request("GET", "/y")).status == 201
        assert pool.connections_made == 2


async def test_a_silent_server_times_out_and_its_late_answer_is_never_read_as_the_next_one() -> None:
    release = asyncio.Event()

    async def answer(request: bytes, _: int) -> list[bytes]:
        if b"/stuck" in request:
            await release.wait()
            return [ok(b'{"late":true}')]
        return [ok(b'{"fresh":true}')]

    async with serving(answer) as (server, pool):
        pool._timeout = 0.3
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/stuck")
        release.set()
        reply = await pool.request("GET", "/next")
        assert reply.body == b'{"fresh":true}'
        assert pool.connections_made == 2
        await asyncio.sleep(0.1)
        assert server.eofs >= 1  # the timed-out connection was closed by the client


async def test_a_cancelled_call_closes_its_connection() -> None:
    async def answer(request: bytes, _: int) -> list[bytes]:
        if b"/slow" in request:
            await asyncio.sleep(0.3)
        return [ok(request.split(b" ")[1])]

    async with serving(answer) as (_, pool):
        task = asyncio.create_task(pool.request("GET", "/slow"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await pool.request("GET", "/after")).body == b"/after"
        assert pool.connections_made == 2


async def test_stray_bytes_after_an_answer_make_its_connection_unusable() -> None:
    async def answer(_: bytes, number: int) -> list[bytes]:
        return [ok(extra=f"X-Conn: {number}\r\n") + (b"junk" if number == 0 else b"")]

    async with serving(answer) as (_, pool):
        await pool.request("GET", "/a")
        reply = await pool.request("GET", "/b")
    assert reply.headers["x-conn"] == "1"


async def test_bytes_arriving_on_an_idle_connection_make_it_unusable() -> None:
    async def answer(_: bytes, number: int) -> list[bytes]:
        return [ok(extra=f"X-Conn: {number}\r\n")]

    async with serving(answer) as (_, pool):
        await pool.request("GET", "/a")
        (idle,) = pool._idle
        idle.data_received(b"HTTP/1.1 200 OK\r\n")  # as if the server answered nothing we asked
        reply = await pool.request("GET", "/b")
    assert reply.headers["x-conn"] == "1"


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool("unix:///var/run/socket", None)


def json_api(port: int) -> JsonApi:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "u", "user": {"token": "t0k3n"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return JsonApi(AsyncClient(config=config))


@pytest.mark.parametrize(("method", "sent"), [("GET", 2), ("PUT", 2), ("POST", 1), ("PATCH", 1)])
async def test_json_api_sends_a_call_again_only_when_that_is_harmless(method: str, sent: int) -> None:
    """A connection that ends unanswered: a GET or PUT is repeated once, a create or a JSON Patch
    (which may have been applied, and would count an attempt twice) is not."""

    async def answer(request: bytes, number: int) -> list[bytes] | None:
        return None if number == 0 else [ok(b'{"kind":"Thing"}')]

    async with serving(answer) as (server, _):
        api = json_api(server.port)
        try:
            if sent == 2:
                assert await api.request(method, "/apis/x/v1/things/a", {"spec": {}}) == {"kind": "Thing"}
            else:
                with pytest.raises(ConnectionError, match="ServerClosed"):
                    await api.request(method, "/apis/x/v1/things", {"spec": {}})
        finally:
            await api.close()
    assert [r.split(b" ", 1)[0].decode() for _, r in server.requests] == [method] * sent
    assert all(b"Authorization: Bearer t0k3n" in r for _, r in server.requests)


async def test_the_pod_lookup_sends_the_evictions_pod_name_as_one_path_segment() -> None:
    async def answer(_: bytes, __: int) -> list[bytes]:
        return [b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"]

    async with serving(answer) as (server, _):
        api = json_api(server.port)
        try:
            pod = await lookup_pod(api, "ns", "a?b/../c\r\n")
        finally:
            await api.close()
    assert not pod.exists and pod.name == "a?b/../c\r\n"
    ((_, request),) = server.requests
    assert request.startswith(b"GET /api/v1/namespaces/ns/pods/a%3Fb%2F..%2Fc%0D%0A HTTP/1.1\r\n")
