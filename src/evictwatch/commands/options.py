"""Options shared by the commands that read records, spelled as kubectl spells them."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .. import views
from ..model.selector import parse_selector
from ..model.types import Outcome, Source

F = TypeVar("F", bound=Callable[..., Any])

OUTCOME_CHOICES = [o.value for o in Outcome]
SOURCE_CHOICES = [s.value for s in Source]


def cluster_options(command: F) -> F:
    """``--kubeconfig`` and ``--context``, as every kubectl command has them."""
    command = click.option(
        "--context", default=None, help="The kubeconfig context to use (default: its current context)."
    )(command)
    return click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False),
        help="Default: $KUBECONFIG, ~/.kube/config, in-cluster.",
    )(command)


def namespace_options(command: F) -> F:
    command = click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")(command)
    return click.option("-n", "--namespace", help="Only this namespace (default: the context's).")(command)


def filter_options(command: F) -> F:
    """What to show: by door, outcome, window and the Pod's labels; PodGone of typos hidden."""
    for decorator in reversed(
        [
            click.option(
                "--source", type=click.Choice(SOURCE_CHOICES), help="Only evictions seen through this door."
            ),
            click.option("--outcome", type=click.Choice(OUTCOME_CHOICES), help="Only this outcome."),
            click.option(
                "--since", metavar="DURATION", help="Only evictions active in this window: 30m, 1h30m, 7d."
            ),
            click.option(
                "-l",
                "--selector",
                metavar="SELECTOR",
                help="The Pod's labels, as kubectl -l: app=web,tier!=db,'env in (a,b)'.",
            ),
            click.option(
                "--show-missing",
                is_flag=True,
                help="Also show attempts at Pods that did not exist (PodGone: usually a mistyped name).",
            ),
        ]
    ):
        command = decorator(command)
    return command


def parse_since(since: str | None) -> datetime.timedelta | None:
    try:
        return views.parse_duration(since) if since else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None


def parse_labels(selector: str | None) -> dict[str, Any] | None:
    try:
        return parse_selector(selector) if selector else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="-l/--selector") from None
