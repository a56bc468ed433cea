"""The harness's commands reach the CLI through entry points; the CLI never imports the harness."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from evictwatch.cli import main


def test_the_sandbox_and_control_plane_commands_come_from_the_entry_point_group() -> None:
    context = click.Context(main)
    assert {"sandbox", "control-plane", "get", "run"} <= set(main.list_commands(context))
    sandbox = main.get_command(context, "sandbox")
    assert sandbox is not None and sandbox.callback is not None
    assert sandbox.callback.__module__ == "evictwatch.testing.commands"
    assert main.get_command(context, "no-such-command") is None
    result = CliRunner().invoke(main, ["control-plane", "--help"])
    assert result.exit_code == 0 and "local control plane" in result.output


def test_running_a_product_command_imports_no_part_of_the_harness() -> None:
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from evictwatch.cli import main\n"
        "result = CliRunner().invoke(main, ['version', '--client'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(name for name in sys.modules if name.startswith('evictwatch.testing')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
