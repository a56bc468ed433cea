"""The one door to the API server: client construction, our resource types, error tests.

Everything above this layer asks the API server through the lightkube ``AsyncClient`` made
here, so that the field manager, timeouts and configuration loading are decided once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig

FIELD_MANAGER = "evictwatch"

R = TypeVar("R")


def from_manifest(resource: type[R], manifest: dict[str, Any]) -> R:
    """A typed lightkube object from a plain manifest (lightkube's from_dict is untyped)."""
    return cast(R, resource.from_dict(manifest))  # type: ignore[attr-defined]


class KubeConfigError(RuntimeError):
    """No usable cluster configuration; the message says where we looked."""


def load_config(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> KubeConfig:
    """The kubeconfig file named, else ``$KUBECONFIG`` or ``~/.kube/config``, else in-cluster."""
    try:
        if kubeconfig:
            return KubeConfig.from_file(str(kubeconfig))
        env = os.environ.get("KUBECONFIG")
        if env:
            return KubeConfig.from_file(env.split(os.pathsep)[0])
        default = Path.home() / ".kube" / "config"
        if default.is_file():
            return KubeConfig.from_file(str(default))
        return KubeConfig.from_service_account()
    except Exception as error:  # noqa: BLE001 - lightkube raises several kinds here
        raise KubeConfigError(
            "no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, or run in a Pod "
            f"with a service account ({error})"
        ) from None


def make_client(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    config: KubeConfig | None = None,
    namespace: str | None = None,
    timeout: float = 10.0,
    field_manager: str = FIELD_MANAGER,
) -> AsyncClient:
    """An async client with our field manager; ``timeout`` bounds every non-watch call."""
    return AsyncClient(
        config or load_config(kubeconfig),
        namespace=namespace,
        timeout=httpx2.Timeout(timeout),
        field_manager=field_manager,
        lazy=False,
        trust_env=False,
    )


def status_code(error: BaseException) -> int | None:
    """The HTTP status of an API error, or None for anything else."""
    if isinstance(error, ApiError):
        code = error.status.code
        return int(code) if code is not None else error.response.status_code
    if isinstance(error, httpx2.HTTPStatusError):  # an answer that was not a Status (a plain 404 page)
        return error.response.status_code
    return None


def error_message(error: BaseException) -> str:
    """The server's own words for a failed call."""
    if isinstance(error, ApiError) and error.status.message:
        return str(error.status.message)
    if isinstance(error, httpx2.HTTPStatusError):
        return error.response.text.strip()[:200]
    return str(error)


def namespace_is_going(error: BaseException) -> bool:
    """A write refused because its namespace is being deleted (403) or is gone (404 on create)."""
    code = status_code(error)
    message = error_message(error)
    return (code == 403 and "is being terminated" in message) or (code == 404 and "namespaces" in message)


def is_not_found(error: BaseException) -> bool:
    return status_code(error) == 404


def is_conflict(error: BaseException) -> bool:
    return status_code(error) == 409


_RETRYABLE_4XX = frozenset({401, 403, 404, 408, 409, 429})
"""Client errors that say nothing about the object: credentials or RBAC (may be fixed), a CRD
being re-installed or a namespace going (404), a timeout, a conflict, throttling."""


def is_permanent(error: BaseException) -> bool:
    """A write the API server refused for the object itself (400, 413, 422, ...): sending the same
    object again can only be refused again, so the caller must count it lost and move on rather
    than retry (and, in a watch, replay it forever in front of every later event)."""
    code = status_code(error)
    return code is not None and 400 <= code < 500 and code not in _RETRYABLE_4XX
