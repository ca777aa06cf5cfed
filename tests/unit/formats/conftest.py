from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from osbuilder.assemble.entry import Content, Entry
from tests.unit.formats.helpers import Spool, sample_tree


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    """Makes Content from bytes, in spool files under tmp_path."""
    directory = tmp_path / "spool"
    directory.mkdir()
    numbers = itertools.count()

    def make(data: bytes) -> Content:
        path = directory / str(next(numbers))
        path.write_bytes(data)
        return Content(path, len(data))

    return make


@pytest.fixture
def tree(spool: Spool) -> list[Entry]:
    return sample_tree(spool, devices=os.geteuid() == 0)
