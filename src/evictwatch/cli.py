"""The command line: ``evictwatch`` (also installed as ``kubectl-evictwatch``)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import signal
import sys
from typing import Any

import click

from .cli_report import report_command
from .commands import about, records
from .commands.connect import EXIT_CLUSTER, EXIT_CONFIG, resolve_or_exit, run_api
from .commands.options import cluster_options
from .config import ConfigError, load_config_file
from .kube.client import KubeConfigError
from .logsetup import setup_logging
from .records.install import CrdMissing


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


PLUGIN_GROUP = "evictwatch.commands"
"""Entry points of this group are commands of ``evictwatch`` (the harness's sandbox and
control-plane are two): loaded when run or listed, never imported by the product itself."""


class _WithPlugins(click.Group):
    """The built-in commands, and those other packages register under :data:`PLUGIN_GROUP`."""

    def _plugins(self) -> dict[str, importlib.metadata.EntryPoint]:
        return {entry.name: entry for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        entry = self._plugins().get(cmd_name) if command is None else None
        if entry is None:
            return command
        loaded = entry.load()
        if not isinstance(loaded, click.Command):
            raise click.ClickException(f"the entry point {entry.value} ({PLUGIN_GROUP}) is not a command")
        return loaded


@click.group(cls=_WithPlugins, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evictwatch")
def main() -> None:
    """Capture every Pod eviction: who asked for it, why, and what came of it.

    Shell completion: eval "$(evictwatch completion bash)" (or zsh, fish).
    """


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML settings file.")
@click.option(
    "--kubeconfig", type=click.Path(dir_okay=False), help="Default: $KUBECONFIG, ~/.kube/config, in-cluster."
)
@click.option(
    "--self-signed", is_flag=True, help="Generate a CA, serve with it, register the webhook to this process."
)
@click.option(
    "--port", type=int, default=None, help="Webhook port (overrides webhook.port; 0 picks a free one)."
)
@click.option(
    "--metrics-port", type=int, default=None, help="Metrics port (overrides metricsPort; 0 disables)."
)
@click.option("-m", "--module", "modules", multiple=True, help="Import this module of @on_eviction handlers.")
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Load @on_eviction handlers from this Python file.",
)
@click.option("--install-crd/--no-install-crd", default=True, help="Create the CRD when it is missing.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
def run(
    config_path: str | None,
    kubeconfig: str | None,
    self_signed: bool,
    port: int | None,
    metrics_port: int | None,
    modules: tuple[str, ...],
    files: tuple[str, ...],
    install_crd: bool,
    log_format: str | None,
) -> None:
    """Run the operator (webhook, controller, watchers) until SIGINT or SIGTERM."""
    from .operator import Operator

    try:
        config = load_config_file(config_path)
        updates: dict[str, object] = {}
        if port is not None:
            updates["webhook"] = config.webhook.model_copy(update={"port": port})
        if metrics_port is not None:
            updates["metricsPort"] = metrics_port
        if log_format is not None:
            updates["logFormat"] = log_format
        config = config.model_copy(update=updates)
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)
        return
    setup_logging(config.logLevel, config.logFormat)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        operator = Operator(
            config,
            kubeconfig=kubeconfig,
            self_signed=self_signed,
            install_crd=install_crd,
            handler_modules=modules,
            handler_files=files,
        )
        await operator.run_until(stop)

    try:
        asyncio.run(serve())
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)
    except KubeConfigError as error:
        _fail(str(error), EXIT_CONFIG)
    except CrdMissing as error:
        _fail(str(error), EXIT_CLUSTER)
    except (ImportError, SyntaxError) as error:
        _fail(f"cannot load handlers: {error}", EXIT_CONFIG)


@main.command()
@click.argument("pod", metavar="[NAMESPACE/]POD")
@click.option("-n", "--namespace", help="The Pod's namespace (default: the context's).")
@click.option("--dry-run", is_flag=True, help="Ask the server to check the eviction without doing it.")
@click.option("--grace-period", type=int, default=None, help="deleteOptions.gracePeriodSeconds.")
@click.option(
    "--policy-version", type=click.Choice(["v1", "v1beta1"]), default="v1", help="Eviction body version."
)
@cluster_options
def evict(
    pod: str,
    namespace: str | None,
    dry_run: bool,
    grace_period: int | None,
    policy_version: str,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Evict a Pod through the Eviction API (as kubectl drain does), printing the server's answer.

    Exit codes: 0 evicted (201), 4 refused by a PodDisruptionBudget (429), 1 any other refusal
    (no such Pod, a webhook said no), 2 configuration, 3 cluster unreachable or no permission.
    """
    from .kube.evict import evict_pod

    scope, sep, name = pod.rpartition("/")
    if sep and namespace and namespace != scope:
        raise click.BadParameter(f"{pod} names namespace {scope}, but -n says {namespace}")
    target = resolve_or_exit(kubeconfig, context)

    async def call() -> tuple[int, dict[str, Any], str]:
        connection = target.connection()
        ns = scope if sep else namespace or connection.namespace
        code, body = await evict_pod(
            connection, ns, name, policy_version=policy_version, dry_run=dry_run, grace_period=grace_period
        )
        return code, body, ns

    code, body, ns = run_api(call, target, "evict pods")
    suffix = " (dry run)" if dry_run else ""
    if code in (200, 201):
        click.echo(f"pod/{name} evicted in {ns}{suffix}")
        return
    message = body.get("message") or body.get("raw") or ""
    if code in (401, 403):
        _fail(
            f"no permission to evict pod/{name} in {ns} on {target.where}: {message}; the eviction needs "
            "'create' on pods/eviction",
            EXIT_CLUSTER,
        )
    click.echo(f"error: eviction of pod/{name} in {ns} refused ({code}): {message}", err=True)
    sys.exit(4 if code == 429 else 1)


main.add_command(records.get)
main.add_command(records.describe)
main.add_command(records.watch)
main.add_command(about.version)
main.add_command(about.completion)


@main.command()
def manifests() -> None:
    """Print the install manifests (namespace, CRD, operator with cert-manager certificates).

    The same documents as deploy/manifests/, rendered from the Helm chart; apply them with
    ``evictwatch manifests | kubectl apply -f -`` after creating the record-key Secret (see
    deploy/README.md).
    """
    from importlib.resources import files

    click.echo(files("evictwatch").joinpath("data/install.yaml").read_text(), nl=False)


main.add_command(report_command, "report")


if __name__ == "__main__":
    main()
