"""``version`` (this CLI, the operator, the API server) and ``completion`` (click's own scripts)."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

import click
from click.shell_completion import get_completion_class
from lightkube.config.kubeconfig import SingleConfig

from ..kube.api import JsonApi
from ..kube.client import status_code
from .connect import CliFailure, explain, is_api_failure, resolve, run_api
from .options import cluster_options

WEBHOOK_NAME = "pods-eviction.evictwatch.io"
VERSION_LABEL = "app.kubernetes.io/version"


def cli_version() -> str:
    return importlib.metadata.version("evictwatch")


def operator_versions(configurations: list[dict[str, Any]]) -> list[str]:
    """What each registered evictwatch webhook says it is: ``0.1.0 (webhook evictwatch)``.

    The operator (the chart, or ``run --self-signed``) labels its ValidatingWebhookConfiguration
    with ``app.kubernetes.io/version``; it is the one cluster-scoped object every installation
    has, so the CLI can find it without knowing the operator's namespace.
    """
    found = []
    for item in configurations:
        if not any(hook.get("name") == WEBHOOK_NAME for hook in item.get("webhooks") or []):
            continue
        metadata = item.get("metadata") or {}
        version = (metadata.get("labels") or {}).get(VERSION_LABEL) or "unknown version"
        found.append(f"{version} (webhook configuration {metadata.get('name')})")
    return found


@click.command()
@click.option("--client", "client_only", is_flag=True, help="Only this CLI's version (no cluster needed).")
@cluster_options
def version(client_only: bool, kubeconfig: str | None, context: str | None) -> None:
    """Print the versions of this CLI, of the operator in the cluster, and of the API server."""
    click.echo(f"Client:    evictwatch {cli_version()} (Python {platform.python_version()})")
    if client_only:
        return
    try:
        target = resolve(kubeconfig, context)
    except CliFailure as failure:
        click.echo(f"error: {failure}", err=True)
        raise SystemExit(failure.code) from None

    async def ask() -> tuple[dict[str, Any], str]:
        connection = target.connection()
        server = await _get_json(connection, "/version")
        try:
            hooks = await _get_json(
                connection, "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
            )
        except Exception as error:
            if not is_api_failure(error) or status_code(error) is None:
                raise
            return server, f"unknown ({explain(error, target, 'list validatingwebhookconfigurations')})"
        versions = operator_versions(hooks.get("items") or [])
        return server, ", ".join(versions) or "not installed (no evictwatch webhook is registered)"

    server, operator = run_api(ask, target, "read the server's version")
    click.echo(f"Operator:  {operator}")
    click.echo(f"Server:    Kubernetes {server.get('gitVersion', '<unknown>')} at {target.server}")


async def _get_json(connection: SingleConfig, path: str) -> dict[str, Any]:
    """GET a path as the client's identity, through the one HTTP stack."""
    api = JsonApi(connection, pool_size=1)
    try:
        return await api.request("GET", path)
    finally:
        await api.close()


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (click's): eval "$(evictwatch completion bash)".

    Put that line in ~/.bashrc (zsh: ~/.zshrc with 'completion zsh'; fish:
    'evictwatch completion fish > ~/.config/fish/completions/evictwatch.fish').
    """
    from ..cli import main

    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(main, {}, "evictwatch", "_EVICTWATCH_COMPLETE").source())


__all__ = ["completion", "version"]
