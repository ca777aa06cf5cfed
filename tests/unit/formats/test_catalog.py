"""The records of the formats (formats/catalog.py): each writer writes exactly the files
its record names, alone and with every other format, and a writer's error reaches the
user prefixed by its format, once."""

from __future__ import annotations

from pathlib import Path

import pytest
from msgspec.structs import replace

from osbuilder.assemble.system import AssembledSystem
from osbuilder.build import _write
from osbuilder.errors import UserError
from osbuilder.formats import rootfs_tar
from osbuilder.formats.catalog import FORMATS, squashfs_root_media
from osbuilder.formats.job import WriteJob, WriteOptions
from osbuilder.formats.outputfile import output_directory
from osbuilder.spec.source import SpecValueError
from tests.unit.formats.test_kernel_erofs import EROFS_DEP
from tests.unit.formats.test_squashfs import EPOCH, system

NAME = "system"
# The test system's kernel, for the formats that check its config: its initrd is gzip'd
# (compressed quickly), the UKI's stub can start it, squashfs reads zstd.
CONFIG = "CONFIG_EFI_STUB=y\nCONFIG_SQUASHFS_ZSTD=y\n"


def written(
    tmp_path: Path, assembled: AssembledSystem, formats: tuple[str, ...], root: str = "initrd"
) -> list[str]:
    """The names of the files a build of `formats` writes (checked: those it reports)."""
    scratch, out = tmp_path / "scratch", tmp_path / "out"
    scratch.mkdir()
    out.mkdir()
    options = WriteOptions("gzip", root=root)  # type: ignore[arg-type]
    with output_directory(out) as outputs:
        job = WriteJob(assembled, outputs, NAME, options, formats, EPOCH, scratch)
        reported = sorted(output.path.name for output in _write(job))
    assert reported == sorted(path.name for path in out.iterdir())
    return reported


@pytest.fixture
def assembled(tmp_path: Path) -> AssembledSystem:
    made = system(tmp_path, modules_dep=EROFS_DEP)  # squashfs and erofs
    return replace(made, kernel=replace(made.kernel, config=CONFIG))


@pytest.mark.parametrize("format_name", list(FORMATS))
def test_each_format_alone_writes_the_files_its_record_names(
    tmp_path: Path, assembled: AssembledSystem, format_name: str
) -> None:
    expected = sorted(FORMATS[format_name].file_names(NAME))
    assert written(tmp_path, assembled, (format_name,)) == expected


def test_the_disks_with_a_squashfs_root_write_the_same_files(
    tmp_path: Path, assembled: AssembledSystem
) -> None:
    """With kernel+squashfs, which then copies the boot stage the disks staged."""
    formats = ("kernel+squashfs", *(record.name for record in squashfs_root_media()))
    everything = {name for format_name in formats for name in FORMATS[format_name].file_names(NAME)}
    assert written(tmp_path, assembled, formats, root="squashfs") == sorted(everything)


def test_every_format_at_once_writes_each_file_once(
    tmp_path: Path, assembled: AssembledSystem
) -> None:
    """Formats that write the same file (NAME-kernel, NAME-cmdline) write it once between
    them: in any order, the union of the records' files."""
    everything = {name for record in FORMATS.values() for name in record.file_names(NAME)}
    assert written(tmp_path, assembled, tuple(reversed(FORMATS))) == sorted(everything)


def test_a_writers_error_is_prefixed_by_its_format_and_keeps_its_type(
    tmp_path: Path, assembled: AssembledSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SpecValueError stays one (the build locates it at its value's FILE:LINE)."""

    def refuse(job: WriteJob) -> list[object]:
        raise SpecValueError(("kernel", "cmdline"), "cannot go in a tar")

    monkeypatch.setattr(rootfs_tar, "write_rootfs_tar", refuse)
    with pytest.raises(SpecValueError) as raised:
        written(tmp_path, assembled, ("kernel+initrd", "tar"))
    assert str(raised.value) == "tar: kernel.cmdline: cannot go in a tar"
    assert raised.value.path == ("kernel", "cmdline")


def test_a_user_error_of_several_lines_is_prefixed_on_each() -> None:
    error = UserError("first\nsecond").prefixed("raw-bios")
    assert type(error) is UserError
    assert str(error) == "raw-bios: first\nraw-bios: second"


def test_each_record_names_a_writer() -> None:
    for record in FORMATS.values():  # module and function names: a typo shows here
        assert callable(record.writer()), record.name
