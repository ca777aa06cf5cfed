"""The `gcp` format: NAME.img.tar.gz, a disk image Google Compute Engine imports.

Compute Engine takes a raw disk as the one member `disk.raw` of a gzip'd GNU tar in the
old GNU format (`tar --format=oldgnu -S`), the disk a whole number of GiB
(https://cloud.google.com/compute/docs/import/import-existing-image). The disk is
raw-bios's (formats/disk.py: SYSLINUX's MBR and a FAT partition with the kernel and
initrd; with `--root squashfs`, the root's partition after it) grown with zeros to the
next GiB; its partition table is left as it is. The tar keeps the runs of zeros as holes
(a GNU sparse member): the archive holds the data alone, and Compute Engine, GNU tar and
bsdtar unpack the whole disk. LinuxKit's gcp (tools/mkimage-gcp) is an ext4 disk of
1 GiB made with guestfs and extlinux, in a plain tar.

GNU tar and gzip write the archive, streamed into the output: holes are found from the
contents in 512-byte blocks (`--hole-detection=raw`), not from how the file system under
the scratch directory stores them; the owner is 0:0 without names, the mode 0644, the
mtime SOURCE_DATE_EPOCH, gzip records no name or time (`-n`), and TAR_OPTIONS and GZIP
(which would add options) are emptied: the archive is reproducible. The disk is copied for
tar with its blocks of zeros left unwritten, so that it is sparse on disk: GNU tar looks
for holes only in a file that has some.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.errors import cannot_write
from osbuilder.formats.compression import GZIP_LEVEL
from osbuilder.formats.disk import bios_disk
from osbuilder.formats.outputfile import COPY_CHUNK
from osbuilder.runner import stream_stdout

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output

SUFFIX = ".img.tar.gz"
MEMBER = "disk.raw"  # the name Compute Engine looks for
GIB = 1 << 30
HOLE_BLOCK = 4096  # the unit of the holes in the scratch copy: a file system block
# What would add options to tar or gzip behind the command line: emptied.
TOOL_ENVIRONMENT = {"TAR_OPTIONS": "", "GZIP": ""}


def write_gcp(job: WriteJob) -> list[Output]:
    disk = bios_disk(job)
    directory = job.scratch / "gcp"
    raw = directory / MEMBER
    try:
        directory.mkdir()
        sparse_copy(disk, raw, whole_gib(disk.stat().st_size))
    except OSError as exc:
        raise cannot_write(raw, exc) from None
    command = archive_command(directory, MEMBER, job.epoch)
    with (
        job.outputs.create(job.name + SUFFIX) as out,
        stream_stdout(command, env=TOOL_ENVIRONMENT) as archive,
    ):
        shutil.copyfileobj(archive, out, COPY_CHUNK)
    return [out.result()]


def archive_command(directory: Path, member: str, epoch: int) -> list[str]:
    """GNU tar writing `member` of `directory` as Compute Engine takes it, gzip'd, to stdout."""
    return [
        "tar",
        "--create",
        "--file=-",
        "--format=oldgnu",
        "--sparse",
        "--hole-detection=raw",
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "--mode=u=rw,go=r",
        f"--mtime=@{epoch}",
        f"--use-compress-program=gzip -n -{GZIP_LEVEL}",
        f"--directory={directory}",
        member,
    ]


def whole_gib(size: int) -> int:
    """`size` rounded up to a whole number of GiB (one at least)."""
    return max(1, -(-size // GIB)) * GIB


def sparse_copy(source: Path, target: Path, size: int) -> None:
    """`source` copied into the new file `target`, `size` bytes long (at least the
    source's; zeros after the copy), its blocks of zeros (HOLE_BLOCK, aligned) left as
    holes."""
    copied = 0
    with source.open("rb") as data, target.open("xb", buffering=0) as out:
        while chunk := data.read(COPY_CHUNK):
            view = memoryview(chunk)
            for start, end in data_runs(chunk, HOLE_BLOCK):
                _write_at(out.fileno(), view[start:end], copied + start)
            copied += len(chunk)
        out.truncate(size)  # (size is the source's, rounded up)


def data_runs(chunk: bytes, block: int) -> Iterator[tuple[int, int]]:
    """The (start, end) of each run of `block`-sized pieces of `chunk` (the last may be
    shorter) that are not all zeros."""
    zeros = bytes(block)
    view = memoryview(chunk)
    run_start: int | None = None
    for at in range(0, len(chunk), block):
        piece = view[at : at + block]
        if piece == zeros[: len(piece)]:
            if run_start is not None:
                yield run_start, at
                run_start = None
        elif run_start is None:
            run_start = at
    if run_start is not None:
        yield run_start, len(chunk)


def _write_at(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written
