"""The outputs kernel+squashfs and kernel+erofs share: the root's image as NAME-FS.img, the
boot stage that mounts it as NAME-FS-initrd.img (formats/boot_stage.py), NAME-kernel and
NAME-cmdline. Each format makes its own image (formats/squashfs.py, formats/kernel_erofs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.formats.boot_stage import RootFilesystem, boot_stage_entries
from osbuilder.formats.kernel_initrd import FORMAT as KERNEL_INITRD
from osbuilder.formats.kernel_initrd import copy_output, write_output
from osbuilder.formats.staging import initrd_compression, kernel_parts, write_initrd

if TYPE_CHECKING:
    from osbuilder.assemble.entry import Entry
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output

ROOT_IMAGE_FORMATS = ("kernel+squashfs", "kernel+erofs")


def write_kernel_root(
    job: WriteJob,
    format_name: str,
    filesystem: RootFilesystem,
    make_root: Callable[[], Path],
    staged_stage: Callable[[], Path] | None = None,
) -> list[Output]:
    """The format's outputs: the image `make_root` makes, the boot stage (the one
    `staged_stage` gives, when the build staged it already), and the kernel and cmdline
    unless another format of the build writes them."""
    parts = kernel_parts(job.system, format_name)
    assert parts.kernel is not None
    stage = boot_stage(job, format_name, filesystem)  # a root it cannot mount: told first
    prefix = f"{job.name}-{filesystem.name}"
    outputs = [copy_output(make_root(), job.outputs, f"{prefix}.img")]
    if staged_stage is not None:
        outputs.append(copy_output(staged_stage(), job.outputs, f"{prefix}-initrd.img"))
    else:
        compression = initrd_compression(job.system, job.options.compression)
        with job.outputs.create(f"{prefix}-initrd.img") as out:
            write_initrd(job.system, out, compression, stage)
        outputs.append(out.result())
    if _writes_kernel(job, format_name):
        outputs.append(copy_output(parts.kernel, job.outputs, f"{job.name}-kernel"))
        outputs.append(write_output(parts.cmdline.encode(), job.outputs, f"{job.name}-cmdline"))
    return outputs


def boot_stage(job: WriteJob, format_name: str, filesystem: RootFilesystem) -> list[Entry]:
    """The boot stage's entries for a root in `filesystem`, made once per build."""
    return job.once(
        f"{filesystem.name} boot stage",
        lambda: boot_stage_entries(job.system.tree, job.epoch, format_name, filesystem),
    )


def _writes_kernel(job: WriteJob, format_name: str) -> bool:
    """Whether this format writes NAME-kernel and NAME-cmdline: kernel+initrd does when the
    build has it, else the first of the kernel+FS formats (they are the same files)."""
    if KERNEL_INITRD in job.formats:
        return False
    return next(name for name in job.formats if name in ROOT_IMAGE_FORMATS) == format_name
