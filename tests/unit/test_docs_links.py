"""The documentation's links: every relative link resolves, and the README reaches every page.

The README is the front page and docs/ the reference, so a page nothing links to is a
page nobody finds, and a link broken by a renamed file or heading is found here rather
than by a reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, REPO / "bench/README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
# A file of the repository named in the text, linked or not: `tests/unit/test_x.py`.
_REPO_FILE = re.compile(
    r"(?<![\w/.-])((?:osbuilder|tests|examples|bench|docs|pkg|kernels)/[a-z0-9_./+-]*\.(?:py|yml|md))\b"
)


def _prose(text: str) -> str:
    """The text links can be in: no fenced blocks; code spans kept as placeholders."""
    return _CODE_SPAN.sub("code", _FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return _LINK.findall(_prose(page.read_text()))


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:  # a repeated heading gets -1, -2 ...
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def _relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # no http:, https:, mailto:


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in filter(_relative, links(page)):
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_files_named_exist(page: Path) -> None:
    """A file moved or renamed leaves no page naming its old path, link or not."""
    named = set(_REPO_FILE.findall(_FENCE.sub("", page.read_text())))
    missing = sorted(name for name in named if not (REPO / name).exists())
    assert not missing, f"{page.relative_to(REPO)} names missing files: {', '.join(missing)}"


def test_readme_links_every_docs_page() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in filter(_relative, links(README))
    }
    missing = sorted(
        str(page.relative_to(REPO)) for page in set((REPO / "docs").glob("*.md")) - linked
    )
    assert not missing, f"README.md links none of: {', '.join(missing)}"


def test_readme_is_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 250, "move reference text into docs/"


def test_anchors_follow_github(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n## The root: kernel+squashfs, `--root squashfs`\n## Tests\n## Tests\n"
    )
    assert anchors(page) == {
        "a-page",
        "the-root-kernelsquashfs---root-squashfs",
        "tests",
        "tests-1",
    }
