"""docs/formats.md and README's format table are what formats/reference.py renders from
the records (as docs/spec.md is the spec models')."""

from __future__ import annotations

from pathlib import Path

from osbuilder.formats.catalog import FORMATS
from osbuilder.formats.reference import PAGE, README, render_page, render_table, with_table

REPO = Path(__file__).resolve().parents[3]


def test_docs_formats_is_generated_from_the_records() -> None:
    assert (REPO / PAGE).read_text() == render_page(), "run `make docs` to regenerate"


def test_the_readme_table_is_generated_from_the_records() -> None:
    readme = (REPO / README).read_text()
    assert with_table(readme) == readme, "run `make docs` to regenerate"


def test_the_table_has_a_row_per_format_with_its_files() -> None:
    rows = render_table().splitlines()[2:]
    assert len(rows) == len(FORMATS)
    assert rows[0].startswith("| `kernel+initrd` (default) | `NAME-kernel`, `NAME-initrd.img`")
