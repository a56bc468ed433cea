"""The harness's own commands, ``evictwatch sandbox`` and ``evictwatch control-plane``.

They are the harness at work (a control plane, a node, the demo), so they live beside it, not in
the product: the CLI finds them through the entry-point group ``evictwatch.commands``
(pyproject.toml), as it would any other package's commands, and never imports this package.
They need the runtime dependencies and Go (or ``KUBEBUILDER_ASSETS``), no test extra.
"""

from __future__ import annotations

import click

from ..commands.connect import EXIT_CLUSTER, fail
from ..logsetup import setup_logging
from . import sandbox as demo


@click.command()
@click.option("--once", is_flag=True, help="Exit after the demo instead of waiting for Ctrl-C.")
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    help="json: one document {node, records} on stdout (progress goes to stderr).",
)
@click.option(
    "--node",
    "node_choice",
    type=click.Choice(["auto", "real", "fake"]),
    default="auto",
    help="auto: a real kubelet where the machine allows (root, cgroups, runc), else a Node object.",
)
def sandbox(once: bool, output: str, node_choice: str) -> None:
    """Try evictwatch without a cluster: a local control plane, the operator, a demo drain.

    Builds kube-apiserver on first use (a few minutes), starts it with etcd and
    kube-controller-manager on 127.0.0.1, runs the operator with a self-signed webhook, makes a
    demo Deployment with a PodDisruptionBudget, evicts (one allowed, one blocked, one dry run),
    and shows the records. As root, the Pods run on a real node (containerd and a kubelet,
    also built on first use). Everything stays up for kubectl until Ctrl-C.
    """
    setup_logging("WARNING")

    def say(text: str) -> None:
        click.echo(f"sandbox: {text}", err=output == "json")

    try:
        demo.run_sandbox(once, say, click.echo, node_choice=node_choice, output=output)
    except demo.START_ERRORS as error:
        fail(str(error).splitlines()[0], EXIT_CLUSTER)


@click.command("control-plane")
@click.option("--with-controller-manager/--without-controller-manager", default=True)
@click.option("--kubeconfig-out", type=click.Path(dir_okay=False), help="Also copy the kubeconfig here.")
def control_plane(with_controller_manager: bool, kubeconfig_out: str | None) -> None:
    """Start the local control plane (built on first use) and keep it until Ctrl-C."""
    try:
        demo.serve_control_plane(with_controller_manager, kubeconfig_out, say=click.echo)
    except demo.START_ERRORS as error:
        fail(str(error), EXIT_CLUSTER)
