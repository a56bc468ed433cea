"""Regenerate the configuration reference in README.md from the settings model."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from evictwatch.config import reference_markdown

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render(text: str) -> str:
    block = f"{START}\n{reference_markdown()}\n{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)


if __name__ == "__main__":
    readme = Path(__file__).resolve().parents[1] / "README.md"
    updated = render(readme.read_text())
    readme.write_text(updated)
    sys.exit(0)
