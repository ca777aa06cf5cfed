"""The `tar` format: NAME.tar, the whole root filesystem as a PAX tar whose entries
say where they came from (OSBUILDER.source, OSBUILDER.location), as LinuxKit's do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from osbuilder.formats.tarball import write_tar

if TYPE_CHECKING:
    from osbuilder.assemble.system import AssembledSystem
    from osbuilder.formats.outputfile import Output, OutputDirectory


def write_rootfs_tar(
    system: AssembledSystem, directory: OutputDirectory, name: str
) -> list[Output]:
    with directory.create(f"{name}.tar") as out:
        write_tar(system.tree.walk(), out)
    return [out.result()]
