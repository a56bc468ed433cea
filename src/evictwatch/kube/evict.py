"""Evicting a Pod through the Eviction subresource, with the body version the caller picks."""

from __future__ import annotations

import json
from typing import Any

from lightkube import AsyncClient


async def evict_pod(
    client: AsyncClient,
    namespace: str,
    name: str,
    *,
    policy_version: str = "v1",
    dry_run: bool = False,
    grace_period: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST an Eviction; returns the HTTP status and the server's JSON answer (a Status)."""
    body: dict[str, Any] = {
        "apiVersion": f"policy/{policy_version}",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    if grace_period is not None:
        body["deleteOptions"] = {"gracePeriodSeconds": grace_period}
    inner = client._client
    request = inner._client.build_request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods/{name}/eviction",
        params={"dryRun": "All"} if dry_run else None,
        json=body,
        headers={"User-Agent": "evictwatch-evict"},
    )
    response = await inner._client.send(request)
    try:
        data: dict[str, Any] = response.json()
    except json.JSONDecodeError:
        data = {"raw": response.text}
    return response.status_code, data
