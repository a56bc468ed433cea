"""The one HTTP stack, against a scripted API server on loopback: errors, retries, credentials."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from lightkube.config.kubeconfig import KubeConfig

from evictwatch.kube.api import JsonApi, keepalive_socket
from evictwatch.kube.credentials import CredentialError
from evictwatch.kube.errors import ApiError, Conflict, Gone, NotFound, ServerError, is_permanent
from evictwatch.kube.listwatch import ListWatch
from evictwatch.kube.pods import lookup_pod


class Server:
    """An aiohttp app whose answers the test scripts; it keeps what it was sent."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # method, path with query, Authorization
        self.tokens: set[str] = {"Bearer good"}
        self.drop_first_post = False
        self.url = ""
        self.encodings: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.raw_path, request.headers.get("Authorization", "")))
        self.encodings.append(request.headers.get("Accept-Encoding", ""))
        if request.headers.get("Authorization", "") not in self.tokens:
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        if request.method == "POST" and self.drop_first_post:
            self.drop_first_post = False
            assert request.transport is not None
            request.transport.close()  # applied, then the connection dies before the answer
            await asyncio.sleep(0.2)
        if request.path.endswith("/missing"):
            status = {
                "kind": "Status",
                "code": 404,
                "reason": "NotFound",
                "message": 'pods "missing" not found',
            }
            return web.json_response(status, status=404)
        if request.path.endswith("/exists"):
            return web.json_response({"kind": "Status", "code": 409, "reason": "AlreadyExists"}, status=409)
        if request.path.endswith("/plain"):
            return web.Response(status=503, text="upstream down")
        if request.query.get("watch") == "true":
            reply = web.StreamResponse()
            await reply.prepare(request)
            for name in ("a", "b"):
                line = {"type": "ADDED", "object": {"metadata": {"name": name, "resourceVersion": "7"}}}
                await reply.write(json.dumps(line).encode() + b"\n")
            await reply.write(json.dumps({"type": "ERROR", "object": {"code": 410}}).encode() + b"\n")
            return reply
        if request.path == "/api/v1/pods":
            return web.json_response(
                {"items": [{"metadata": {"name": "x"}}], "metadata": {"resourceVersion": "5"}}
            )
        return web.json_response({"ok": True, "body": (await request.text()) or None})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    script = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:[\\s\\S]*}", script.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    script.url = f"http://127.0.0.1:{port}"
    yield script
    await runner.cleanup()


def api_for(server: Server, user: dict[str, Any]) -> JsonApi:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": server.url}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    return JsonApi(config)


async def test_errors_are_ours_by_reason(server: Server) -> None:
    api = api_for(server, {"token": "good"})
    with pytest.raises(NotFound, match="not found"):
        await api.request("GET", "/api/v1/namespaces/ns/pods/missing")
    with pytest.raises(Conflict) as conflict:
        await api.request("POST", "/api/v1/namespaces/ns/configmaps/exists", {"a": 1})
    assert conflict.value.reason == "AlreadyExists" and not is_permanent(conflict.value)
    with pytest.raises(ServerError, match="upstream down") as plain:
        await api.request("GET", "/plain")
    assert plain.value.code == 503
    assert is_permanent(ApiError(422, "invalid")) and not is_permanent(ApiError(429, "slow down"))
    await api.close()


async def test_a_name_from_an_eviction_never_splits_a_request(server: Server) -> None:
    api = api_for(server, {"token": "good"})
    await lookup_pod(api, "ns", "a\r\nDELETE /x HTTP/1.1\r\n")
    await api.request("GET", "/api/v1/namespaces/ns/pods/b\r\nDELETE /x HTTP/1.1")  # unquoted
    assert [m for m, _, _ in server.seen] == ["GET", "GET"]
    assert server.seen[0][1].endswith("/pods/a%0D%0ADELETE%20%2Fx%20HTTP%2F1.1%0D%0A")
    assert "\r" not in server.seen[1][1] and "\n" not in server.seen[1][1]
    await api.close()


async def test_a_create_whose_answer_was_lost_is_not_sent_twice(server: Server) -> None:
    api = api_for(server, {"token": "good"})
    server.drop_first_post = True
    with pytest.raises(ConnectionError):
        await api.request("POST", "/api/v1/namespaces/ns/configmaps", {"a": 1})
    assert [m for m, _, _ in server.seen] == ["POST"]
    await api.close()


async def test_a_rotated_token_file_is_read_again_after_a_401(server: Server, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("good\n")
    api = api_for(server, {"tokenFile": str(token)})
    assert (await api.request("GET", "/ok"))["ok"]
    token.write_text("rotated\n")
    server.tokens = {"Bearer rotated"}
    assert (await api.request("GET", "/ok"))["ok"]
    assert [auth for _, _, auth in server.seen] == ["Bearer good", "Bearer good", "Bearer rotated"]
    await api.close()


async def test_an_exec_plugin_credential_is_run_once_and_cached(server: Server, tmp_path: Path) -> None:
    plugin, runs = tmp_path / "plugin.py", tmp_path / "runs"
    plugin.write_text(
        f"import json, os, pathlib\n"
        f"p = pathlib.Path({str(runs)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',"
        " 'status': {'token': os.environ['SECRET_FROM_CONFIG']}}))\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    api = api_for(
        server,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": sys.executable,
                "args": [str(plugin)],
                "env": [{"name": "SECRET_FROM_CONFIG", "value": "good"}],
            }
        },
    )
    for _ in range(3):
        assert (await api.request("GET", "/ok"))["ok"]
    assert runs.read_text() == "x"
    assert {auth for _, _, auth in server.seen} == {"Bearer good"}
    await api.close()


async def test_a_failing_exec_plugin_says_so(server: Server) -> None:
    api = api_for(
        server,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "/nonexistent/plugin",
                "installHint": "install the plugin",
            }
        },
    )
    with pytest.raises(CredentialError, match="install the plugin"):
        await api.request("GET", "/ok")
    await api.close()


async def test_basic_auth(server: Server) -> None:
    server.tokens = {"Basic dTpw"}
    api = api_for(server, {"username": "u", "password": "p"})
    assert (await api.request("GET", "/ok"))["ok"]
    await api.close()


async def test_list_then_watch_until_gone(server: Server) -> None:
    api = api_for(server, {"token": "good"})
    events: list[tuple[str, str]] = []

    async def handler(kind: str, obj: dict[str, Any]) -> None:
        events.append((kind, obj["metadata"]["name"]))

    watch = ListWatch(api, "/api/v1/pods", handler, "test", field_selector="spec.nodeName=n1")
    version = await watch.list_once()
    assert version == "5"
    from evictwatch.kube.listwatch import Gone as WatchGone

    with pytest.raises(WatchGone):
        await watch.watch_once(version)
    assert events == [("SYNC", "x"), ("ADDED", "a"), ("ADDED", "b")]
    assert watch.resource_version == "7"
    paths = [path for _, path, _ in server.seen]
    assert "fieldSelector=spec.nodeName%3Dn1" in paths[0] and "watch=true" in paths[1]
    assert "allowWatchBookmarks=true" in paths[1]
    assert server.encodings == ["", ""]  # a gzipped list or stream would cost both sides CPU
    assert Gone.__mro__[1] is ApiError
    await api.close()


def test_client_sockets_send_keepalive_probes() -> None:
    """A half-open watch connection is noticed in about a minute, as with client-go."""
    info = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 443))
    with keepalive_socket(info) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
