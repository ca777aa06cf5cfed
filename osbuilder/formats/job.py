"""One build's writing: what each format's writer is handed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, cast

from msgspec import Struct, field

from osbuilder.formats.catalog import FORMATS

if TYPE_CHECKING:
    from osbuilder.assemble.system import AssembledSystem
    from osbuilder.formats.compression import Compression
    from osbuilder.formats.outputfile import OutputDirectory
    from osbuilder.formats.uefi_signing import SigningIdentity


class WriteOptions(Struct, frozen=True):
    compression: Compression | None = None  # None: the best the kernel can unpack
    # Where the disk formats keep the root: in their initrd, or on a squashfs partition
    # (mounted by kernel+squashfs's boot stage, which is then their initrd).
    root: Literal["initrd", "squashfs"] = "initrd"
    # A dm-verity hash tree after the root's image, its root hash on the kernel's command
    # line (formats/verity.py); only for formats whose root is such an image.
    verity: bool = False
    digests: bool = True  # each output's sha256, computed as it is written (Output.sha256)
    secure_boot: SigningIdentity | None = None  # signs the unified kernel image when given


T = TypeVar("T")


class WriteJob(Struct):
    """One build's writing, handed to each format's writer."""

    system: AssembledSystem
    outputs: OutputDirectory
    name: str
    options: WriteOptions
    formats: tuple[str, ...]  # every format this build writes
    epoch: int  # SOURCE_DATE_EPOCH: the time of everything the writers generate
    scratch: Path  # a private directory for intermediate files, removed with the build
    _made: dict[str, object] = field(default_factory=dict)

    def once(self, what: str, make: Callable[[], T]) -> T:
        """What `make` makes (an intermediate file several formats take), made on the
        first call for `what` only."""
        if what not in self._made:
            self._made[what] = make()
        return cast(T, self._made[what])

    def writes_boot_media(self) -> bool:
        """Whether a format of this build embeds the kernel and initrd in a medium."""
        return any(FORMATS[name].is_boot_medium for name in self.formats)

    def stages_boot_files(self) -> bool:
        """Whether a format of this build takes the kernel and initrd as staged files
        (formats/staging.py boot_files): the media, and tar-kernel-initrd."""
        return any(FORMATS[name].staged_boot_files for name in self.formats)
