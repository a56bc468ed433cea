"""The watch plumbing that needs no server: URLs relative to the API server, line splitting."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import httpx2
import pytest
from lightkube import ApiError

from evictwatch.kube.listwatch import _path
from evictwatch.kube.raw import JsonApi, _lines, keepalive_socket, status_code


class Base:
    def __init__(self, base: str) -> None:
        self.base = base


@pytest.mark.parametrize(
    ("server", "built", "expected"),
    [
        # In a Pod: lightkube's server has the default port, the built URL drops it.
        ("https://10.96.0.1:443", "https://10.96.0.1/api/v1/pods?limit=500", "/api/v1/pods?limit=500"),
        (
            "https://127.0.0.1:6443",
            "https://127.0.0.1:6443/api/v1/pods?watch=true",
            "/api/v1/pods?watch=true",
        ),
        (
            "https://Rancher.example/k8s/clusters/c-1/",
            "https://rancher.example/k8s/clusters/c-1/api/v1/pods",
            "/api/v1/pods",
        ),
    ],
)
def test_paths_are_relative_to_the_server_url(server: str, built: str, expected: str) -> None:
    request = httpx2.Request("GET", built)
    assert _path(cast(JsonApi, Base(server.rstrip("/"))), request) == expected


def test_a_url_elsewhere_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not under"):
        _path(cast(JsonApi, Base("https://h/prefix")), httpx2.Request("GET", "https://h/other/api/v1/pods"))


class Chunks:
    """Stands in for aiohttp's StreamReader: hands out the chunks given."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def test_lines_are_split_across_chunks_and_may_be_long() -> None:
    big = b'{"object":"' + b"x" * 200_000 + b'"}'
    chunks = [b'{"a":1}\n{"b"', b":2}\n", big[:70_000], big[70_000:], b"\n", b'{"tail":true}']
    reader = cast(aiohttp.StreamReader, Chunks(chunks))
    assert [line async for line in _lines(reader)] == [b'{"a":1}', b'{"b":2}', big, b'{"tail":true}']


def test_status_code_of_either_error_kind() -> None:
    response = httpx2.Response(410, request=httpx2.Request("GET", "https://h/api"))
    plain = httpx2.HTTPStatusError("gone", request=response.request, response=response)
    assert status_code(plain) == 410
    status: Any = {"code": 409, "message": "conflict", "kind": "Status", "apiVersion": "v1", "metadata": {}}
    conflict = httpx2.Response(409, json=status, request=httpx2.Request("GET", "https://h/api"))
    assert status_code(ApiError(request=conflict.request, response=conflict)) == 409
    assert status_code(RuntimeError()) is None


def test_client_sockets_send_keepalive_probes() -> None:
    """A half-open watch connection is noticed in about a minute, as with client-go."""
    info = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 443))
    with keepalive_socket(info) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
