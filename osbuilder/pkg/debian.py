"""Root filesystems from Debian packages, made by mmdebstrap without any daemon.

mmdebstrap writes a tar to its stdout; the entries stream straight into a
layer of the content store as they come, so compressing the layer overlaps
with mmdebstrap's own work and nothing is unpacked on the host. A recipe with
`programs` keeps only the shared libraries they load (osbuilder.pkg.closure):
its tar goes to a temporary file first, read once to find them and once into
the layer.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
import tarfile
import tempfile
from typing import IO

from msgspec import Struct

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.imagewriter import Layer, new_layer
from osbuilder.oci.store import ContentStore
from osbuilder.pkg.bytecode import Bytecode
from osbuilder.pkg.closure import prune_root
from osbuilder.pkg.layers import Dropper, copy_stream, read_tar
from osbuilder.pkg.recipe import DebianRoot
from osbuilder.pkg.roottree import scan_root
from osbuilder.pkg.stdlib import PrunedStdlib
from osbuilder.runner import CommandFailed, stream_stdout

log = logging.getLogger(__name__)

# The extract variant leaves dpkg's database empty: while the downloaded packages are
# there, osbuilder.pkg.dpkg_status writes it from their control files.
STATUS_HOOK = f'{shlex.quote(sys.executable)} -m osbuilder.pkg.dpkg_status "$1"'


class Mirror(Struct, frozen=True):
    """Where mmdebstrap takes the packages from."""

    #: URLs or sources lines; none: the recipe's `mirror`, else mmdebstrap's default.
    lines: tuple[str, ...] = ()
    #: The image's /etc/apt/sources.list, when `lines` name a place nobody else can use
    #: (a locked build's repository of checked .debs).
    sources_list: str | None = None
    #: A keyring that signs the mirror's Release files (mmdebstrap's --keyring).
    keyring: str | None = None

    def options(self, variant: str) -> list[str]:
        options = [f"--keyring={self.keyring}"] if self.keyring else []
        if self.sources_list is not None:
            # The last hook to run: apt reads the sources until then (extract runs no
            # customize hooks).
            stage = "extract" if variant == "extract" else "customize"
            contents = shlex.quote(self.sources_list)
            options.append(f'--{stage}-hook=printf %s {contents} > "$1/etc/apt/sources.list"')
        return options


#: The recipe's `mirror`, else mmdebstrap's default archives.
DEFAULT_MIRROR = Mirror()


def mmdebstrap_command(
    root: DebianRoot, architecture: str, target: str = "-", mirror: Mirror = DEFAULT_MIRROR
) -> list[str]:
    command = [
        "mmdebstrap",
        f"--variant={root.variant}",
        f"--architectures={architecture}",
        "--format=tar",
        *mirror.options(root.variant),
    ]
    if root.packages:
        command.append("--include=" + ",".join(root.packages))
    if root.variant == "extract":
        command.append(f"--extract-hook={STATUS_HOOK}")
    command += [root.suite, target]
    command += mirror.lines or ([root.mirror] if root.mirror else [])
    return command


def build_root_layer(
    store: ContentStore,
    root: DebianRoot,
    architecture: str,
    epoch: int,
    what: str,
    bytecode: Bytecode | None = None,
    mirror: Mirror = DEFAULT_MIRROR,
    stdlib: PrunedStdlib | None = None,
) -> Layer:
    """Run mmdebstrap and write its root filesystem as one normalised layer."""
    command = mmdebstrap_command(root, architecture, mirror=mirror)
    dropped = Dropper(root.drop, root.keep)
    try:
        with new_layer(store) as layer, tempfile.TemporaryFile(prefix="osbuilder-root-") as spool:
            with stream_stdout(command, env={"SOURCE_DATE_EPOCH": str(epoch)}) as output:
                if root.programs is None:
                    count = copy_stream(
                        read_tar(output), layer, epoch, dropped, what, bytecode, stdlib
                    )
                else:
                    shutil.copyfileobj(output, spool)
            if root.programs is not None:
                # What no program loads is known once every file was seen: the tar
                # (complete: mmdebstrap succeeded) is read twice, from disk.
                spool.seek(0)
                dropped = Dropper(root.drop, root.keep, _unloaded(spool, root, dropped, what))
                spool.seek(0)
                count = copy_stream(read_tar(spool), layer, epoch, dropped, what, bytecode, stdlib)
            if count == 0:
                raise UserError(f"{what}: mmdebstrap produced an empty root filesystem")
    except CommandFailed as exc:
        raise ExternalError(f"{what}: {mmdebstrap_reason(exc)}") from None
    assert layer.result is not None
    return layer.result


def _unloaded(spool: IO[bytes], root: DebianRoot, dropped: Dropper, what: str) -> frozenset[str]:
    """The paths of the spooled root that no program of `root.programs` loads."""
    assert root.programs is not None
    with tarfile.open(fileobj=spool, mode="r:") as tar:
        tree = scan_root(tar, dropped)
    pruning = prune_root(tree, root.programs, root.dlopen, what)
    log.info(
        "%s: %d shared libraries no program loads left out, with %d files that needed "
        "them (%.1f MB)",
        what,
        pruning.libraries,
        pruning.dependents,
        pruning.size / 1e6,
    )
    return pruning.removed


# mmdebstrap's closing lines say only that something before them failed.
_GENERIC = ("E: apt download failed", "E: mmdebstrap failed", "E: apt-get ")


def mmdebstrap_reason(failure: CommandFailed) -> str:
    """The apt error lines ('E: Unable to locate package x') are what to act on."""
    errors = [line.strip() for line in failure.stderr.splitlines() if line.startswith("E:")]
    specific = [line for line in errors if not line.startswith(_GENERIC)]
    reasons = specific or errors
    if reasons:
        return "mmdebstrap failed: " + "; ".join(dict.fromkeys(reasons))
    return str(failure)
