#!/usr/bin/env python3
"""Benchmark: the Redis OS's size, against the same build with every file stored apart.

Two builds of examples/redis.yml from the content store (the packages are built into it
first when they are missing), each writing kernel+initrd and tar: the build as users get
it, and the same with --no-dedup, where identical files of the containers' read-only roots
are not hard links (docs/building.md): the same-run baseline of what storing the same bytes
once saves. For each, what a user's machine pays:

- the initrd as shipped (compressed, as the build compresses it): what is downloaded and
  what the kernel unpacks at boot. Target <= 25 MB.
- the assembled tree: what its files occupy once unpacked, each inode counted once (as
  `du --apparent-size` counts a hard link), from the tar, whose hard-link members carry no
  data. In an initramfs this is the memory the root holds. Target <= 80 MB.
- what the tree holds apart from the containers (the root: kernel modules, the init
  image's files) and each container's root, each inode counted with its first name, so
  that what linking saves shows where it comes from.

And the init image (the spec's first `init:`, osbuilder/init): its layers' compressed size
as stored and pulled. Target <= 10 MB.

Exit status: 0 when every target is met, 1 otherwise (or when a build fails).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.build import build_command  # noqa: E402
from bench.common import add_store_argument, build_packages  # noqa: E402
from osbuilder.assemble.images import ImageSource  # noqa: E402
from osbuilder.oci.platform import host_target  # noqa: E402
from osbuilder.oci.store import ContentStore  # noqa: E402
from osbuilder.pkg.tag import template_reference  # noqa: E402
from osbuilder.spec import load_spec  # noqa: E402

SPEC = REPO / "examples/redis.yml"
INITRD_TARGET = 25e6
TREE_TARGET = 80e6
INIT_IMAGE_TARGET = 10e6
CONTAINERS = "containers"


class BuildFailed(Exception):
    pass


@dataclass(frozen=True)
class Sizes:
    initrd: int  # compressed, as written
    tree: int  # file contents, each inode once
    areas: dict[str, int]  # "root" and each container's directory -> its part of `tree`
    links: int  # names that are hard links to a file named before


def build(store: Path, out: Path, options: Sequence[str]) -> None:
    formats = ["-f", "kernel+initrd", "-f", "tar"]
    command = build_command(store, out, "redis", [SPEC], [*formats, *options])
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildFailed(f"{' '.join(command[2:])} failed:\n{result.stderr.strip()}")


def area(name: str) -> str:
    """Where a path of the tree belongs: a container's directory, or the root."""
    parts = name.split("/")
    if parts[0] == CONTAINERS and len(parts) > 2:
        return "/".join(parts[:3])
    return "root"


def measure(out: Path) -> Sizes:
    areas: dict[str, int] = {}
    links = 0
    with tarfile.open(out / "redis.tar", encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            if member.islnk():
                links += 1  # the data went with the name the link points at
            elif member.isreg():
                where = area(member.name)
                areas[where] = areas.get(where, 0) + member.size
    initrd = (out / "redis-initrd.img").stat().st_size
    return Sizes(initrd, sum(areas.values()), areas, links)


def init_image_size(store: Path) -> tuple[str, int]:
    """The spec's first init image and its layers' compressed size in the store."""
    spec = load_spec([SPEC], template_reference).spec
    assert spec.init, f"{SPEC} has no init image"
    content = ContentStore(store)
    with content.using():
        image = ImageSource(content, None, host_target()).get(spec.init[0])
    return str(image.reference), sum(layer.size for layer in image.manifest.layers)


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def report(linked: Sizes, apart: Sizes, init_image: tuple[str, int]) -> int:
    print(f"== bench/size.py: the size of {SPEC.relative_to(REPO)} ==")
    print("same run: built as users get it, and with --no-dedup (every file stored apart)")
    print(f"  {'':40} {'build':>9} {'--no-dedup':>11} {'saved':>9}")
    rows = [("initrd (compressed)", linked.initrd, apart.initrd)]
    rows.append(("tree (each inode once)", linked.tree, apart.tree))
    for name in sorted(apart.areas, key=lambda name: (name != "root", name)):
        rows.append((f"  {name}", linked.areas.get(name, 0), apart.areas[name]))
    for label, built, baseline in rows:
        print(f"  {label:40} {mb(built):>9} {mb(baseline):>11} {mb(baseline - built):>9}")
    print(f"  names that are hard links: {linked.links} (--no-dedup: {apart.links})")
    reference, init_size = init_image
    print(f"  init image {reference}: {mb(init_size)} compressed")
    checks = [
        ("initrd, compressed", linked.initrd, INITRD_TARGET),
        ("tree, each inode once", linked.tree, TREE_TARGET),
        ("init image, compressed", init_size, INIT_IMAGE_TARGET),
    ]
    print("summary:")
    for name, value, target in checks:
        verdict = "ok" if value <= target else "MISSED"
        print(f"  {name:30} {mb(value):>9}  target <= {mb(target):9} {verdict}")
    return 0 if all(value <= target for _, value, target in checks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_store_argument(parser)
    store: Path = parser.parse_args(argv).cache.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        try:
            try:
                build(store, Path(tmp) / "linked", [])
            except BuildFailed as failure:
                print(f"bench/size.py: {failure}; building the packages", file=sys.stderr)
                if build_packages(store) != 0:
                    raise BuildFailed("osbuilder pkg build failed") from None
                build(store, Path(tmp) / "linked", [])
            build(store, Path(tmp) / "apart", ["--no-dedup"])
        except BuildFailed as failure:
            print(f"bench/size.py: {failure}", file=sys.stderr)
            return 1
        linked, apart = measure(Path(tmp) / "linked"), measure(Path(tmp) / "apart")
    return report(linked, apart, init_image_size(store))


if __name__ == "__main__":
    raise SystemExit(main())
