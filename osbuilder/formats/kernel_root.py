"""The outputs kernel+squashfs and kernel+erofs share: the root's image as NAME-FS.img, the
boot stage that mounts it as NAME-FS-initrd.img (formats/boot_stage.py), NAME-kernel and
NAME-cmdline. Each root's image is made once per build (formats/squashfs_root.py,
formats/erofs_root.py); with --verity, NAME-cmdline names the root hash of each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder.formats.boot_stage import RootFilesystem, boot_stage
from osbuilder.formats.catalog import FORMATS, root_image_formats
from osbuilder.formats.erofs_root import erofs_root
from osbuilder.formats.initrd import initrd_compression, kernel_parts, write_initrd
from osbuilder.formats.kernel_initrd import copy_output, write_output
from osbuilder.formats.squashfs_root import squashfs_root

if TYPE_CHECKING:
    from osbuilder.formats.job import WriteJob
    from osbuilder.formats.outputfile import Output
    from osbuilder.formats.root_image import RootImage

KERNEL_FILE = "{name}-kernel"  # as the records of the formats name it
# Each read-only root's image, by its file system's name (the catalog's `root`).
ROOT_IMAGES: dict[str, Callable[[WriteJob], RootImage]] = {
    "squashfs": squashfs_root,
    "erofs": erofs_root,
}


def write_kernel_root(
    job: WriteJob, filesystem: RootFilesystem, staged_stage: Callable[[], Path] | None = None
) -> list[Output]:
    """The format's outputs: the root's image, the boot stage (the one `staged_stage`
    gives, when the build staged it already), and the kernel and cmdline unless another
    format of the build writes them."""
    parts = kernel_parts(job.system)
    assert parts.kernel is not None
    stage = boot_stage(job, filesystem)  # a root it cannot mount: told first
    prefix = f"{job.name}-{filesystem.name}"
    root = ROOT_IMAGES[filesystem.name](job)
    outputs = [copy_output(root.path, job.outputs, f"{prefix}.img")]
    if staged_stage is not None:
        outputs.append(copy_output(staged_stage(), job.outputs, f"{prefix}-initrd.img"))
    else:
        compression = initrd_compression(job.system, job.options.compression)
        with job.outputs.create(f"{prefix}-initrd.img") as out:
            write_initrd(job.system, out, compression, stage)
        outputs.append(out.result())
    if _writes_kernel(job, filesystem):
        outputs.append(copy_output(parts.kernel, job.outputs, f"{job.name}-kernel"))
        outputs.append(
            write_output(kernel_cmdline(job).encode(), job.outputs, f"{job.name}-cmdline")
        )
    return outputs


def kernel_cmdline(job: WriteJob) -> str:
    """NAME-cmdline: the kernel's, and with --verity the word of each kernel+FS root the
    build writes (a build of kernel+squashfs and kernel+erofs shares the file)."""
    words = [job.system.kernel.cmdline]
    if job.options.verity:
        for record in root_image_formats():
            if record.name in job.formats:
                tree = ROOT_IMAGES[record.root](job).verity
                assert tree is not None
                words.append(tree.cmdline_word(record.root))
    return " ".join(word for word in words if word)


def _writes_kernel(job: WriteJob, filesystem: RootFilesystem) -> bool:
    """Whether the format with its root in `filesystem` writes NAME-kernel and NAME-cmdline,
    which several formats of a build may write: kernel+initrd (whose root is the initrd)
    when the build has it, else the first of the kernel+FS formats."""
    writers = [FORMATS[name] for name in job.formats if KERNEL_FILE in FORMATS[name].files]
    first = min(writers, key=lambda record: record.root != "initrd")  # (min: the first)
    return first.root == filesystem.name
