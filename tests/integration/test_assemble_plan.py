"""The assembler's one walk: the layers it unpacks together, up front, are the ones it
applies, in their order (a layer it applied without preparing it would be unpacked then,
alone: the parallel unpacking silently sequential)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from osbuilder.assemble.images import ImageSource
from osbuilder.assemble.snapshots import LayerRef, Snapshot, Snapshots
from osbuilder.assemble.system import assemble
from osbuilder.assemble.tree import Spool, Tree
from osbuilder.oci.platform import host_target
from osbuilder.spec import load_spec
from tests.conftest import Packages

pytestmark = pytest.mark.integration

SPEC = """\
kernel:
  image: {kernel}
init: [{init}, {crun}]
volumes:
  - name: empty
  - name: files
    image: {getty}
  - name: layout
    image: {redis}
    format: oci
onboot:
  - name: dhcpcd
    image: {dhcpcd}
onshutdown:
  - name: bye
    image: {getty}
services:
  - name: getty
    image: {getty}
  - name: redis
    image: {redis}
"""


class RecordingSnapshots(Snapshots):
    """Snapshots that note the layers prepared and the layers applied."""

    prepared: list[str]
    applied: list[str]

    def prepare(self, layers: Sequence[LayerRef]) -> None:
        self.prepared = [ref.digest for ref in layers]
        super().prepare(layers)

    def layer(self, ref: LayerRef) -> Snapshot:
        self.applied.append(ref.digest)
        return super().layer(ref)


def test_every_layer_applied_was_prepared_in_the_order_applied(
    packages: Packages, tmp_path: Path
) -> None:
    short = {name.split("/")[-1]: reference for name, reference in packages.references.items()}
    path = tmp_path / "spec.yml"
    path.write_text(SPEC.format(**short))
    spec = load_spec([path]).spec
    snapshots = RecordingSnapshots(tmp_path / "snapshots", packages.store.open_blob)
    snapshots.applied = []
    spool = Spool(tmp_path)
    try:
        images = ImageSource(packages.store, None, host_target())
        with packages.store.using():
            system = assemble(spec, images, Tree(spool), 0, snapshots, sbom=None)
    finally:
        spool.close()
    assert list(dict.fromkeys(snapshots.applied)) == list(dict.fromkeys(snapshots.prepared))
    # (the OCI-format volume's image is there as blobs, its layers unpacked for no one)
    names = ("kernel", "init", "crun", "getty", "redis", "dhcpcd")
    assert set(system.references) == {short[name] for name in names}
