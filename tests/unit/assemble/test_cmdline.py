"""The system's kernel command line: the initrd's root is a ramfs unless the spec chose."""

from __future__ import annotations

import pytest

from osbuilder.assemble.cmdline import system_cmdline


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, "rootfstype=ramfs"),
        ("", "rootfstype=ramfs"),
        ("console=ttyS0 quiet", "console=ttyS0 quiet rootfstype=ramfs"),
        # The spec chose: its words stay exactly as written.
        ("console=ttyS0 rootfstype=tmpfs", "console=ttyS0 rootfstype=tmpfs"),
        ("root=/dev/vda  ro", "root=/dev/vda  ro"),
    ],
)
def test_the_initrd_root_is_a_ramfs_unless_the_spec_chose(spec: str | None, expected: str) -> None:
    assert system_cmdline(spec) == expected


def test_a_word_that_only_contains_root_is_not_a_choice() -> None:
    assert system_cmdline("osbuilder.root=x") == "osbuilder.root=x rootfstype=ramfs"
