"""Which cluster to talk to, and the tests every layer applies to a failed call.

Everything above this layer asks the API server through :class:`evictwatch.kube.api.JsonApi`
(the one HTTP stack); what it needs is the cluster and the user, which :func:`cluster_config`
reads from a kubeconfig (lightkube's parser: the file format, contexts, exec plugins) or from the
in-cluster service account. No lightkube client is made: its HTTP stack is not used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar, cast

from lightkube import KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from .errors import ApiError, is_permanent

FIELD_MANAGER = "evictwatch"
CALL_ERRORS: tuple[type[BaseException], ...] = (ApiError, OSError)
"""What a call to the API server can raise: an error answer (:class:`ApiError`), or no answer
(``ConnectionError``, an ``OSError``: refused, reset, TLS, no answer in time)."""

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


def cluster_config(
    kubeconfig: str | os.PathLike[str] | None = None, *, config: KubeConfig | None = None
) -> SingleConfig:
    """The cluster and user of the kubeconfig's current context (what :class:`JsonApi` takes)."""
    chosen = (config or load_config(kubeconfig)).get()
    if chosen is None:
        raise KubeConfigError("the kubeconfig names no current context: pass --context or set one")
    return chosen


def status_code(error: BaseException) -> int | None:
    """The HTTP status of an API error answer, or None for anything else (no answer at all)."""
    return error.code if isinstance(error, ApiError) else None


def error_message(error: BaseException) -> str:
    """The server's own words for a failed call."""
    return error.message if isinstance(error, ApiError) else str(error)


def namespace_is_going(error: BaseException) -> bool:
    """A write refused because its namespace is being deleted (403) or is gone (404 on create)."""
    code = status_code(error)
    message = error_message(error)
    return (code == 403 and "is being terminated" in message) or (code == 404 and "namespaces" in message)


def is_not_found(error: BaseException) -> bool:
    return status_code(error) == 404


def is_conflict(error: BaseException) -> bool:
    return status_code(error) == 409


__all__ = [
    "ApiError",
    "cluster_config",
    "is_conflict",
    "is_not_found",
    "is_permanent",
    "namespace_is_going",
    "status_code",
]
