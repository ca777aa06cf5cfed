"""Small systems assembled by the real assembler from images written into a throwaway store:
two container images that share files (as two Debian roots share libc), and an init image
that has one of them too."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

from osbuilder.assemble.images import ImageSource
from osbuilder.assemble.snapshots import Snapshots
from osbuilder.assemble.system import AssembledSystem, assemble
from osbuilder.assemble.tree import Spool, Tree
from osbuilder.oci.imagewriter import ImageSpec, dir_info, file_info, new_layer, write_image
from osbuilder.oci.platform import host_target
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore
from osbuilder.spec import load_spec

EPOCH = 1_700_000_000
LIBC = b"\x7fELF a C library " * 4000  # bytes every image has
TOOL = b"#!/bin/sh\necho a tool\n" * 30
CONF = b"shared = yes\n"


class File:
    """A regular file of an image, and what a layer says about it."""

    def __init__(
        self,
        data: bytes,
        mode: int = 0o644,
        uid: int = 0,
        xattrs: Mapping[str, bytes] | None = None,
        mtime: int = EPOCH - 100,
    ) -> None:
        self.data, self.mode, self.uid, self.mtime = data, mode, uid, mtime
        self.xattrs = dict(xattrs or {})


# Two images whose roots share libc, a tool and a configuration file; the same bytes under
# another mode, owner or xattrs; and one file of each that only it has. Times differ.
IMAGE_A = {
    "lib/libc.so.6": File(LIBC, 0o755),
    "bin/tool": File(TOOL, 0o755),
    "bin/tool-again": File(TOOL, 0o755),  # one image's two copies are linked too
    "etc/shared.conf": File(CONF),
    "etc/by-mode": File(b"mode\n", 0o644),
    "etc/by-owner": File(b"owner\n", 0o644, uid=0),
    "etc/by-xattr": File(b"xattr\n", 0o644),
    "etc/only-a": File(b"a\n" * 9),
}
IMAGE_B = {
    "bin/tool": File(TOOL, 0o755, mtime=EPOCH - 50),
    "etc/by-mode": File(b"mode\n", 0o600),
    "etc/by-owner": File(b"owner\n", 0o644, uid=1000),
    "etc/by-xattr": File(b"xattr\n", 0o644, xattrs={"user.origin": b"b"}),
    "etc/only-b": File(b"b\n" * 9),
    "etc/shared.conf": File(CONF, mtime=EPOCH - 50),
    "lib/libc.so.6": File(LIBC, 0o755, mtime=EPOCH - 50),
}
INIT = {"lib/libc.so.6": File(LIBC, 0o755), "usr/lib/libc-copy": File(LIBC, 0o755)}

# A writable onboot container and a read-only service from the two images; a second service
# of the first image (which reuses the first one's unpacked root); `files` in the root.
SPEC = """\
init: [test/init:1]
onboot:
  - name: writer
    image: test/a:1
services:
  - name: reader
    image: test/b:1
    readonly: true
  - name: again
    image: test/a:1
files:
  - path: /etc/libc-in-root
    source: {libc}
    mode: "0755"
"""
WRITER = "containers/onboot/000-writer/lower"
READER = "containers/services/reader/rootfs"


def store_image(store: ContentStore, reference: str, files: Mapping[str, File]) -> None:
    with new_layer(store) as layer:
        directories = sorted({name.rpartition("/")[0] for name in files})
        for directory in directories:
            layer.add(dir_info(directory, 0o755, EPOCH))
        for name, file in files.items():
            info = file_info(name, len(file.data), file.mode, file.mtime)
            info.uid = info.gid = file.uid
            info.pax_headers = {
                f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
                for key, value in file.xattrs.items()
            }
            layer.add(info, io.BytesIO(file.data))
    assert layer.result is not None
    spec = ImageSpec(architecture=host_target().architecture, cmd=["/bin/tool"])
    store.tag(str(parse_reference(reference)), write_image(store, [layer.result], spec))


def image_store(directory: Path) -> ContentStore:
    store = ContentStore(directory)
    store_image(store, "test/a:1", IMAGE_A)
    store_image(store, "test/b:1", IMAGE_B)
    store_image(store, "test/init:1", INIT)
    return store


def assemble_spec(
    store: ContentStore, work: Path, spec_text: str = SPEC, *, dedup: bool = True
) -> AssembledSystem:
    """The system `spec_text` makes (its {libc} a host file of LIBC), assembled in `work`."""
    work.mkdir(parents=True)
    libc = work / "libc.so.6"
    libc.write_bytes(LIBC)
    spec_file = work / "spec.yml"
    spec_file.write_text(spec_text.format(libc=libc))
    spool_directory = work / "spool"
    spool_directory.mkdir()
    spool = Spool(spool_directory)
    images = ImageSource(store, None, host_target())
    with store.using():
        system = assemble(
            load_spec([spec_file]).spec,
            images,
            Tree(spool),
            EPOCH,
            Snapshots(work / "snapshots", store.open_blob),
            sbom=None,
            dedup=dedup,
        )
    spool.close()  # (flushed: what it holds stays readable)
    return system


def linked_system(directory: Path) -> AssembledSystem:
    """SPEC assembled in `directory` from a store of its own."""
    return assemble_spec(image_store(directory / "store"), directory / "build")
