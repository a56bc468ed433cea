"""Evicting a Pod through the Eviction subresource, with the body version the caller picks."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .api import JsonApi
from .errors import ApiError


async def evict_pod(
    source: Any,
    namespace: str,
    name: str,
    *,
    policy_version: str = "v1",
    dry_run: bool = False,
    grace_period: int | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST an Eviction; returns the HTTP status and the server's JSON answer (a Status).

    ``source`` is the kubeconfig to speak for (a lightkube client or config): the call goes
    through the one HTTP stack like every other, on a connection of its own.
    """
    body: dict[str, Any] = {
        "apiVersion": f"policy/{policy_version}",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    if grace_period is not None:
        body["deleteOptions"] = {"gracePeriodSeconds": grace_period}
    api = JsonApi(source, pool_size=1, user_agent="evictwatch-evict")
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/eviction"
    try:
        answer = await api.request("POST", path, body, {"dryRun": "All"} if dry_run else None)
    except ApiError as error:
        return error.code, error.status or {"message": error.message}
    finally:
        await api.close()
    return 201, answer
