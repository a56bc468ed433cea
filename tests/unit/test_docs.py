"""The README's configuration reference is generated from the settings model; it must not drift."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_readme_configuration_reference_is_current() -> None:
    render = runpy.run_path(str(ROOT / "scripts" / "update_readme.py"))["render"]
    text = (ROOT / "README.md").read_text()
    assert render(text) == text, "README.md is out of date: run python scripts/update_readme.py"


def test_readme_holds_the_ci_command() -> None:
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))
    ]
    assert ci[-1] in (ROOT / "README.md").read_text()
