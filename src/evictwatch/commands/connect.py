"""How a command finds its cluster, and what it says when it cannot use it.

Every command that talks to the API server goes through :func:`resolve` (which kubeconfig,
which context, which server) and :func:`run_api` (run the call; turn whatever went wrong into
one line that names the server or the file and says what to do). Exit codes, as the README
documents them: 2 for configuration (no kubeconfig, a missing file, an unknown context), 3 for
the cluster (unreachable, no CRD, no permission), 130 after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

import aiohttp
import click
from lightkube import KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from ..kube.client import KubeConfigError, cluster_config, error_message, status_code

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_CLUSTER = 3
EXIT_INTERRUPTED = 130

T = TypeVar("T")

CRD_MISSING_HINT = (
    "install the Helm chart (deploy/helm/evictwatch), 'kubectl apply -f deploy/manifests/10-crd.yaml', "
    "or run 'evictwatch run' once (it installs the CRD)"
)


class CliFailure(Exception):
    """One line for the user and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@dataclass(frozen=True)
class Target:
    """The cluster a command talks to, and where that came from (for the error lines)."""

    config: KubeConfig | None
    server: str
    context: str
    origin: str
    """``the kubeconfig /path`` or ``the in-cluster service account``."""

    def connection(self) -> SingleConfig:
        """The cluster and user to call (:class:`JsonApi` takes it); ``.namespace`` is the
        context's namespace (``default`` when it names none)."""
        try:
            return cluster_config(config=self.config)
        except KubeConfigError as error:
            raise CliFailure(str(error), EXIT_CONFIG) from None

    @property
    def where(self) -> str:
        return f"the API server at {self.server}" + (f" (context {self.context})" if self.context else "")


def _kubeconfig_path(kubeconfig: str | None) -> tuple[Path | None, str]:
    """The file to read and how it was chosen; raises CliFailure naming a missing one."""
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise CliFailure(f"--kubeconfig {kubeconfig}: no such file", EXIT_CONFIG)
        return path, f"the kubeconfig {path}"
    env = os.environ.get("KUBECONFIG", "")
    first = next((part for part in env.split(os.pathsep) if part), "")
    if first:
        path = Path(first).expanduser()
        if not path.is_file():
            raise CliFailure(
                f"KUBECONFIG names {first}, which does not exist: point KUBECONFIG at your kubeconfig "
                "file, or pass --kubeconfig",
                EXIT_CONFIG,
            )
        return path, f"the kubeconfig {path} (from KUBECONFIG)"
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return default, f"the kubeconfig {default}"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None, "the in-cluster service account"
    raise CliFailure(
        f"no Kubernetes configuration found: no --kubeconfig, KUBECONFIG is unset and {default} does not "
        "exist; pass --kubeconfig FILE or set KUBECONFIG",
        EXIT_CONFIG,
    )


def resolve(kubeconfig: str | None, context: str | None = None) -> Target:
    """Which cluster: ``--kubeconfig``, else ``$KUBECONFIG``, ``~/.kube/config``, in-cluster."""
    path, origin = _kubeconfig_path(kubeconfig)
    try:
        config = KubeConfig.from_file(path) if path else KubeConfig.from_service_account()
    except Exception as error:  # noqa: BLE001 - lightkube raises many kinds for a bad file
        raise CliFailure(f"cannot read {origin}: {type(error).__name__}: {error}", EXIT_CONFIG) from None
    if context:
        if context not in config.contexts:
            known = ", ".join(sorted(config.contexts)) or "none"
            raise CliFailure(f"{origin} has no context {context!r} (it has: {known})", EXIT_CONFIG)
        config.current_context = context
    single = config.get()
    if single is None:
        known = ", ".join(sorted(config.contexts)) or "none"
        raise CliFailure(f"{origin} sets no current context: pass --context (it has: {known})", EXIT_CONFIG)
    return Target(config, single.cluster.server, single.context_name, origin)


def resolve_or_exit(kubeconfig: str | None, context: str | None = None) -> Target:
    """:func:`resolve`, or the one line and exit code 2."""
    try:
        return resolve(kubeconfig, context)
    except CliFailure as failure:
        fail(str(failure), failure.code)


_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, OSError)


def explain(error: BaseException, target: Target, doing: str) -> CliFailure:
    """The one line for an error met while ``doing`` something (``list podevictions``)."""
    code = status_code(error)
    if code == 404:
        return CliFailure(
            f"{target.where} has no PodEviction CRD (podevictions.evictwatch.io): {CRD_MISSING_HINT}",
            EXIT_CLUSTER,
        )
    if code == 401:
        return CliFailure(
            f"{target.where} did not accept the credentials in {target.origin}: log in again or fix "
            "the kubeconfig's user",
            EXIT_CLUSTER,
        )
    if code == 403:
        return CliFailure(
            f"no permission to {doing} on {target.where}: {error_message(error)}; ask an admin to bind "
            "you a role that allows it (the chart's evictwatch-view ClusterRole reads records)",
            EXIT_CLUSTER,
        )
    if code is not None:
        return CliFailure(f"{doing} failed on {target.where} ({code}): {error_message(error)}", EXIT_CLUSTER)
    if isinstance(error, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(error):
        return CliFailure(
            f"TLS to {target.where} failed ({error}): check the kubeconfig's certificate-authority",
            EXIT_CLUSTER,
        )
    if isinstance(error, TimeoutError) or "no answer within" in str(error):
        return CliFailure(
            f"{target.where} did not answer in time: is it overloaded or unreachable?", EXIT_CLUSTER
        )
    if isinstance(error, _CONNECTION_ERRORS):
        reason = str(error).strip() or type(error).__name__
        return CliFailure(
            f"cannot reach {target.where} ({reason}): is the cluster running? check the server in "
            f"{target.origin}",
            EXIT_CLUSTER,
        )
    return CliFailure(f"{doing} failed on {target.where}: {type(error).__name__}: {error}", EXIT_CLUSTER)


def is_api_failure(error: BaseException) -> bool:
    """An error :func:`explain` has a line for (anything else is a bug and keeps its traceback)."""
    return status_code(error) is not None or isinstance(
        error, (*_CONNECTION_ERRORS, ssl.SSLError, TimeoutError)
    )


def run_api(call: Callable[[], Awaitable[T]], target: Target | None, doing: str) -> T:
    """Run ``call`` to completion; exit with one line on any failure, 130 on Ctrl-C."""
    try:
        return asyncio.run(_guarded(call, target, doing))
    except KeyboardInterrupt:
        click.echo("", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except CliFailure as failure:
        fail(str(failure), failure.code)


async def _guarded(call: Callable[[], Awaitable[T]], target: Target | None, doing: str) -> T:
    try:
        return await call()
    except CliFailure:
        raise
    except Exception as error:
        if target is None or not is_api_failure(error):
            raise
        raise explain(error, target, doing) from None
