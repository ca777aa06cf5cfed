"""The `tar` format: NAME.tar, the whole root filesystem as a PAX tar whose entries
say where they came from (OSBUILDER.source, OSBUILDER.location), as LinuxKit's do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from osbuilder.formats.tarball import write_tar

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output


def write_rootfs_tar(job: WriteJob) -> list[Output]:
    with job.outputs.create(f"{job.name}.tar") as out:
        write_tar(job.system.tree.walk(), out)
    return [out.result()]
