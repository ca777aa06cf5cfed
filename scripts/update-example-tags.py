#!/usr/bin/env python3
"""Rewrite `osbuilder/NAME[:TAG]` in examples/*.yml to the tags the recipes build now."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from osbuilder.pkg.recipe import load_recipe  # noqa: E402
from osbuilder.pkg.tag import package_tag  # noqa: E402


def current_tags() -> dict[str, str]:
    tags = {}
    for directory in sorted([*REPO.glob("pkg/*/"), *REPO.glob("kernels/*/")]):
        loaded = load_recipe(directory)
        tags[loaded.recipe.image] = package_tag(loaded)
    return tags


def rewrite(text: str, tags: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}:{tags[name]}" if name in tags else match.group(0)

    return re.sub(r"(osbuilder/[a-z0-9-]+)(?::[\w][\w.-]*)?", replace, text)


def main() -> int:
    tags = current_tags()
    for path in sorted((REPO / "examples").glob("*.yml")):
        text = path.read_text()
        updated = rewrite(text, tags)
        if updated != text:
            path.write_text(updated)
            print(f"updated {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
