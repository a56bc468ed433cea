"""Whatever reaches the webhook port: garbage, giants, plain HTTP, slow clients. Straight at the port.

Anything in the cluster network can open a connection to the webhook Service, so the
server must answer nonsense with a clear 4xx, refuse big bodies before reading them, keep
its memory flat, and keep serving the API server while slow or broken clients hang on.

The operator runs as ``evictwatch run`` in a child process (its memory is measured in
``/proc``), serving with certificate files as in a cluster. The deadlines are checked on a
:class:`WebhookServer` in this process with short timeouts.

Content type: the API server always sends ``application/json``. A request that declares
another type (``text/plain``, a form, ...) is refused with 415 -- such a request cannot come
from the API server, and refusing it keeps browsers' "simple" cross-site POSTs out; a
request with no Content-Type at all is read as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest

from evictwatch.capture.filtering import CaptureFilter
from evictwatch.capture.server import WebhookServer, make_server_context
from evictwatch.capture.webhook import EvictionWebhook
from evictwatch.config import Filter, SelfIdentity
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.operator_process import OperatorProcess, WebhookCertificates, webhook_certificates

FIXTURES = Path(__file__).parents[1] / "fixtures" / "admission-reviews"
VALID = (FIXTURES / "arv1-kubectl-drain-1.json").read_bytes()
PATH = "/validate-pods-eviction"
MAX_BODY = 1024 * 1024
TEN_MB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
async def served(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[OperatorProcess, WebhookCertificates]]:
    """A webhook-only replica (no controller, no watchers) that records nothing it is sent."""
    folder = tmp_path_factory.mktemp("bad-input")
    certs = webhook_certificates(folder / "tls")
    config = {
        "logFormat": "json",
        "webhook": {"host": "127.0.0.1", "maxBodyBytes": MAX_BODY, **certs.webhook_settings()},
        # Valid reviews are answered without API calls: their namespace is not captured.
        "capture": {"namespaces": ["evictwatch-bad-input-nothing-here"]},
        "controller": {"enabled": False},
        "watchers": {"enabled": False},
    }
    operator = OperatorProcess(config, folder / "op", control_plane.kubeconfig_path)
    await operator.start()
    yield operator, certs
    await operator.stop()


@pytest.fixture
def operator(served: tuple[OperatorProcess, WebhookCertificates]) -> OperatorProcess:
    return served[0]


@pytest.fixture
def client_context(served: tuple[OperatorProcess, WebhookCertificates]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(served[1].ca_file))


async def post(
    operator: OperatorProcess,
    context: ssl.SSLContext,
    body: bytes,
    content_type: str | None = "application/json",
) -> httpx2.Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    async with httpx2.AsyncClient(verify=context, timeout=10.0) as http:
        return await http.post(
            f"https://127.0.0.1:{operator.webhook_port}{PATH}", content=body, headers=headers
        )


async def assert_still_serving(operator: OperatorProcess, context: ssl.SSLContext) -> float:
    started = time.monotonic()
    reply = await post(operator, context, VALID)
    elapsed = time.monotonic() - started
    assert reply.status_code == 200, reply.text
    assert reply.json()["response"] == {"uid": json.loads(VALID)["request"]["uid"], "allowed": True}
    assert operator.running
    assert "Traceback" not in operator.stderr(), operator.tail()
    return elapsed


def head(length: int | None, *, content_type: str = "application/json", chunked: bool = False) -> bytes:
    lines = [f"POST {PATH} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def tls_connect(
    port: int, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")


async def read_status(reader: asyncio.StreamReader, timeout: float) -> int:
    line = await asyncio.wait_for(reader.readline(), timeout)
    assert line.startswith(b"HTTP/1.1 "), line
    return int(line.split()[1])


# ---- malformed bodies -------------------------------------------------------------------------
NESTED = b'{"request": ' * 200 + b"{}" + b"}" * 200
MALFORMED: list[tuple[bytes, str]] = [
    (b"", "the body is empty"),
    (b"   ", "the body is empty"),
    (b"not json at all", "not valid JSON"),
    (b"\x00\xff\xfe binary", "not UTF-8"),
    (VALID[: len(VALID) // 2], "not valid JSON"),
    (VALID.rstrip()[:-1], "not valid JSON"),
    (b"[" * 100_000, "nests deeper"),
    (b'{"a":' * 50_000, "nests deeper"),
    (NESTED, "nests deeper"),
    (b"1" * 100_000, "not valid JSON"),
    (b'"an AdmissionReview, honest"', "must be a JSON object"),
    (b"[]", "must be a JSON object"),
    (b"null", "must be a JSON object"),
    (b"{}", "review.request is missing"),
    (b'{"request": []}', "review.request must be an object"),
    (b'{"request": {"uid": 7}}', "request.uid must be a string"),
    (b'{"apiVersion": "admission.k8s.io/v9", "request": {"uid": "u"}}', "not supported"),
    (b'{"request": {"uid": "u", "operation": "CREATE", "kind": {"kind": "Eviction"}}}', "names no Pod"),
]


async def test_malformed_bodies_get_400_with_the_reason(
    operator: OperatorProcess, client_context: ssl.SSLContext
) -> None:
    async with httpx2.AsyncClient(verify=client_context, timeout=10.0) as http:
        for body, reason in MALFORMED:
            reply = await http.post(
                f"https://127.0.0.1:{operator.webhook_port}{PATH}",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert reply.status_code == 400, (body[:40], reply.status_code, reply.text[:200])
            assert reason in reply.json()["error"], (body[:40], reply.json())
    # A review of something other than an Eviction is a proper AdmissionReview answer: denied, 400.
    review = json.loads(VALID)
    review["request"]["kind"]["kind"] = "Pod"
    reply = await post(operator, client_context, json.dumps(review).encode())
    assert reply.status_code == 200
    assert reply.json()["response"]["allowed"] is False
    assert reply.json()["response"]["status"]["code"] == 400
    await assert_still_serving(operator, client_context)
    print(f"\nmalformed bodies: {len(MALFORMED) + 1} tried, each refused with its reason")


# ---- content type -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        (None, 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/yaml", 415),
    ],
)
async def test_content_type(
    operator: OperatorProcess, client_context: ssl.SSLContext, content_type: str | None, status: int
) -> None:
    reply = await post(operator, client_context, VALID, content_type)
    assert reply.status_code == status, reply.text
    if status == 415:
        assert "application/json" in reply.json()["error"]


# ---- big bodies -------------------------------------------------------------------------------
class RssSampler:
    """The child's resident memory, sampled every 20 ms while a flood goes on."""

    def __init__(self, operator: OperatorProcess) -> None:
        self.operator = operator
        self.peak = operator.rss_bytes()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.operator.rss_bytes())
            await asyncio.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def push(
    port: int, context: ssl.SSLContext, *, chunked: bool, send_all: bool
) -> tuple[int | None, int]:
    """Offer a 10 MB body (declared, or chunked); return (status, bytes sent).

    The status is None when the server cut the connection before the answer could be read:
    it answers and closes without reading on, so a client still writing may get a reset.
    """
    reader, writer = await tls_connect(port, context)
    sent = 0
    chunk = b"x" * 65536
    framed = b"10000\r\n" + chunk + b"\r\n" if chunked else chunk
    try:
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            writer.write(head(None if chunked else TEN_MB, chunked=chunked) + framed)
            sent = len(chunk)
            await writer.drain()
            while send_all and sent < TEN_MB:
                writer.write(framed)
                await asyncio.wait_for(writer.drain(), 2.0)
                sent += len(chunk)
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        try:
            return await read_status(reader, 5.0), sent
        except (ConnectionError, ssl.SSLError):
            return None, sent
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await writer.wait_closed()


async def test_ten_megabyte_bodies_are_refused_early_and_memory_stays_flat(
    operator: OperatorProcess, client_context: ssl.SSLContext
) -> None:
    port = operator.webhook_port
    for _ in range(5):  # warm up: TLS, the parser, the allocator
        await assert_still_serving(operator, client_context)
    before = operator.rss_bytes()

    # Declared too big: answered after the first 64 KiB, without waiting for the rest.
    started = time.monotonic()
    status, _ = await push(port, client_context, chunked=False, send_all=False)
    seconds = time.monotonic() - started
    assert status == 413 and seconds < 2.0, (status, seconds)

    with RssSampler(operator) as sampler:
        declared = await asyncio.gather(
            *(push(port, client_context, chunked=False, send_all=True) for _ in range(10))
        )
        chunked: list[tuple[int | None, int]] = []
        for _ in range(2):  # five at a time: each may legitimately be read up to the 1 MiB limit
            chunked += await asyncio.gather(
                *(push(port, client_context, chunked=True, send_all=True) for _ in range(5))
            )
        async with httpx2.AsyncClient(verify=client_context, timeout=20.0) as http:
            for _ in range(5):  # an ordinary client that just sends it all
                try:
                    reply = await http.post(
                        f"https://127.0.0.1:{port}{PATH}",
                        content=b"x" * TEN_MB,
                        headers={"Content-Type": "application/json"},
                    )
                    assert reply.status_code == 413
                except (httpx2.WriteError, httpx2.ReadError, httpx2.RemoteProtocolError):
                    pass  # the server answered and closed while the client was still writing
    for status, _sent in declared + chunked:
        # (How much a client managed to write says little: loopback socket buffers hold megabytes,
        # and under load the server closes late. Memory, below, is what shows it did not read it.)
        assert status in (413, None), status
    answered = sum(1 for status, _ in declared + chunked if status == 413)
    pushed = sum(sent for _, sent in declared + chunked)
    await assert_still_serving(operator, client_context)
    after = operator.rss_bytes()
    growth = (sampler.peak - before) / 2**20
    # Reading ten whole 10 MB bodies at once would be +100 MiB; what the server may read (five
    # chunked bodies up to the 1 MiB limit at a time, and buffers) stays far below that.
    assert growth < 30, f"RSS grew by {growth:.1f} MiB while 10 MB bodies were thrown at it"
    assert (after - before) / 2**20 < 20
    print(
        f"\n10 MB bodies: 26 tried (11 declared, 10 chunked, 5 plain), all refused: 413 read by "
        f"{answered + 1} of the 21 raw clients, the others cut off while still writing "
        f"({seconds * 1000:.0f} ms to answer a declared one); {pushed / 2**20:.0f} MiB pushed at it; "
        f"RSS {before / 2**20:.1f} MiB before, peak +{growth:.1f} MiB, {after / 2**20:.1f} MiB after"
    )


# ---- not TLS, not HTTP ------------------------------------------------------------------------
async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` over plain TCP; return what came back before the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(4096), 12.0):
                received += chunk
        return received
    finally:
        writer.close()


async def test_plain_http_and_garbage_on_the_tls_port(
    operator: OperatorProcess, client_context: ssl.SSLContext
) -> None:
    port = operator.webhook_port
    attempts = {
        "plain HTTP": head(len(VALID)) + VALID,
        "plain GET": b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
        "random bytes": os.urandom(4096),
        "a truncated ClientHello": bytes.fromhex("16030100c8010000c40303") + os.urandom(20),
        "an SSLv2 hello": bytes.fromhex("802b0103010012000000100000") + os.urandom(16),
    }

    async def attempt(what: str, data: bytes) -> None:
        started = time.monotonic()
        answer = await raw_exchange(port, data)
        assert not answer.startswith(b"HTTP/"), f"{what} was answered in plain HTTP"
        assert answer == b"" or answer[:1] == b"\x15", f"{what}: not a TLS alert: {answer[:20]!r}"
        assert time.monotonic() - started < 12, f"{what}: the connection was held open"

    # At once: the ones that stall the handshake are closed by its deadline (10 s), together.
    await asyncio.gather(*(attempt(what, data) for what, data in attempts.items()))
    await assert_still_serving(operator, client_context)


# ---- slow clients -----------------------------------------------------------------------------
async def test_slow_clients_do_not_stall_the_api_server(
    operator: OperatorProcess, client_context: ssl.SSLContext
) -> None:
    port = operator.webhook_port
    held: list[asyncio.StreamWriter] = []
    try:
        # 100 connections that never start TLS, 100 that trickle a request head, 100 that
        # announce a body and send a few bytes of it.
        for _ in range(100):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append(writer)
        for _ in range(100):
            _, writer = await tls_connect(port, client_context)
            writer.write(f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            held.append(writer)
        for _ in range(100):
            _, writer = await tls_connect(port, client_context)
            writer.write(head(len(VALID)) + VALID[:10])
            held.append(writer)

        async def trickle() -> None:
            while True:
                for writer in held[100:200]:
                    writer.write(b"X")
                await asyncio.sleep(0.5)

        dripping = asyncio.create_task(trickle())
        try:
            latencies = [await assert_still_serving(operator, client_context) for _ in range(30)]
        finally:
            dripping.cancel()
        latencies.sort()
        assert latencies[-1] < 2.0, f"a review took {latencies[-1]:.2f} s while slow clients hung on"
        print(
            f"\nslow clients: 300 held open; 30 reviews on fresh connections meanwhile, "
            f"median {latencies[15] * 1000:.0f} ms, worst {latencies[-1] * 1000:.0f} ms"
        )
    finally:
        for writer in held:
            writer.close()


# ---- deadlines --------------------------------------------------------------------------------
@pytest.fixture
async def strict_server(
    served: tuple[OperatorProcess, WebhookCertificates],
) -> AsyncIterator[WebhookServer]:
    certs = served[1]
    webhook = EvictionWebhook(CaptureFilter(Filter(namespaces=["nowhere"]), SelfIdentity()), cast(Any, None))
    server = WebhookServer(
        webhook,
        "127.0.0.1",
        0,
        make_server_context(certs.cert_file, certs.key_file),
        handshake_timeout=1.0,
        idle_timeout=1.5,
        body_timeout=1.0,
    )
    await server.start()
    yield server
    await server.stop()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Read until the server closes; fail if it has not after ``seconds``."""
    received = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while chunk := await asyncio.wait_for(reader.read(4096), seconds):
            received += chunk
    return received


async def test_deadlines_for_handshake_head_and_body(
    strict_server: WebhookServer, client_context: ssl.SSLContext
) -> None:
    port = strict_server.port
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # never says hello
    assert await closed_within(reader, 5.0) == b""
    writer.close()
    handshake = time.monotonic() - started

    started = time.monotonic()
    reader, writer = await tls_connect(port, client_context)
    writer.write(f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())  # and never finishes
    assert await closed_within(reader, 5.0) == b""
    writer.close()
    idle = time.monotonic() - started

    started = time.monotonic()
    reader, writer = await tls_connect(port, client_context)
    writer.write(head(len(VALID)) + VALID[:10])  # the body never completes
    assert (await closed_within(reader, 5.0)).startswith(b"HTTP/1.1 408 ")
    writer.close()
    body = time.monotonic() - started

    async with httpx2.AsyncClient(verify=client_context, timeout=5.0) as http:
        reply = await http.post(f"https://127.0.0.1:{port}{PATH}", content=VALID)
    assert reply.status_code == 200
    for what, seconds in (("handshake", handshake), ("request head", idle), ("body", body)):
        assert seconds < 4.0, f"the {what} deadline took {seconds:.1f} s"
    print(f"\ndeadlines: handshake {handshake:.1f} s, request head {idle:.1f} s, body {body:.1f} s (408)")
