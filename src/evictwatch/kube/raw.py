"""Plain-JSON calls on the webhook's hot path, through lightkube's own configured HTTP client.

lightkube decodes every answer into typed models and encodes every body from them; on the
path that runs while an eviction waits for our answer, that costs more than the API call
(measured: a Pod GET took 6.0 ms through the typed client and 3.5 ms as plain JSON on the
same connection). These helpers share the client's connection pool, TLS and credentials.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError


def _http(client: AsyncClient) -> httpx2.AsyncClient:
    inner: httpx2.AsyncClient = client._client._client
    return inner


def _check(response: httpx2.Response) -> None:
    if response.status_code >= 400:
        try:
            response.raise_for_status()
        except httpx2.HTTPStatusError as error:
            from lightkube.core.generic_client import transform_exception

            raise transform_exception(error) from None


async def get_json(client: AsyncClient, path: str) -> dict[str, Any]:
    response = await _http(client).get(path)
    _check(response)
    data: dict[str, Any] = json.loads(response.content)
    return data


async def send_json(
    client: AsyncClient,
    method: str,
    path: str,
    body: Any,
    params: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    response = await _http(client).request(
        method,
        path,
        content=json.dumps(body, separators=(",", ":")),
        params=params,
        headers={"Content-Type": content_type},
    )
    _check(response)
    data: dict[str, Any] = json.loads(response.content)
    return data


__all__ = ["ApiError", "get_json", "send_json"]
