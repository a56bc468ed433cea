"""The command line: ``evictwatch`` (also installed as ``kubectl-evictwatch``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import click

from .config import ConfigError, load_config_file
from .kube.client import KubeConfigError
from .logsetup import setup_logging

EXIT_CONFIG = 2
EXIT_CLUSTER = 3


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evictwatch")
def main() -> None:
    """Capture every Pod eviction: who asked for it, why, and what came of it."""


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
        _fail(str(error), EXIT_CLUSTER)
    except (ImportError, SyntaxError) as error:
        _fail(f"cannot load handlers: {error}", EXIT_CONFIG)


@main.command("control-plane")
@click.option("--with-controller-manager/--without-controller-manager", default=True)
@click.option("--kubeconfig-out", type=click.Path(dir_okay=False), help="Also copy the kubeconfig here.")
def control_plane(with_controller_manager: bool, kubeconfig_out: str | None) -> None:
    """Start the local control plane (built on first use) and keep it until Ctrl-C."""
    from .testing.binaries import BinariesError
    from .testing.controlplane import ControlPlane, ControlPlaneError

    try:
        cp = ControlPlane(with_controller_manager=with_controller_manager).start()
    except (BinariesError, ControlPlaneError) as error:
        _fail(str(error), EXIT_CLUSTER)
        return
    try:
        if kubeconfig_out:
            Path(kubeconfig_out).write_text(cp.kubeconfig_path.read_text())
        click.echo(f"kube-apiserver {cp.version()['gitVersion']} at {cp.url}")
        click.echo(f"export KUBECONFIG={kubeconfig_out or cp.kubeconfig_path}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            signal.pause()
    finally:
        cp.stop()


if __name__ == "__main__":
    main()
