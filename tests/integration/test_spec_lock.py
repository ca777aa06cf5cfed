"""Spec locks against a real registry: `osbuilder lock`, locked builds, `lock --check`.

Each test pushes small images of its own to a docker-registry on loopback, locks a spec
naming them, then moves a tag (pushes different content under it) and looks at what a
user sees: exit codes, the lines on stderr, the lock file, the files of the system built.
"""

from __future__ import annotations

import re
import signal
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from osbuilder.oci.store import ContentStore
from tests.integration.faultproxy import Slow, StartFaultProxy
from tests.integration.helpers import osbuilder, store_image, terminated_when
from tests.integration.images import (
    OciImage,
    PushedImage,
    build_image,
    build_index,
    push,
    sha256_digest,
)
from tests.integration.registry import Registry

pytestmark = pytest.mark.integration

HELLO = "containers/services/hello/lower/etc/hello"


@dataclass(frozen=True)
class Workspace:
    root: Path
    registry: Registry
    store: Path

    @property
    def spec(self) -> Path:
        return self.root / "system.yml"

    @property
    def lock(self) -> Path:
        return self.root / "system.yml.lock"

    def image(self, name: str, content: bytes) -> OciImage:
        """A one-file image (etc/hello holds `content`), in a layout of its own."""
        return build_image(self.root / "layouts" / name, [{"etc/hello": content}], tag="1")

    def locked_hello(self) -> PushedImage:
        """test/hello:1 (etc/hello: "one") pushed, named by the spec, and locked."""
        pushed = push(self.image("one", b"one\n"), self.registry, "test/hello", "1")
        self.write_spec([pushed.reference])
        locked = self.run("lock", str(self.spec))
        assert locked.returncode == 0, locked.stderr
        return pushed

    def write_spec(self, references: Sequence[str]) -> None:
        """A spec running one service per reference: hello, then more-1, more-2..."""
        names = ["hello", *(f"more-{index}" for index in range(1, len(references)))]
        services = [
            f"  - name: {n}\n    image: {r}\n" for n, r in zip(names, references, strict=True)
        ]
        self.spec.write_text("services:\n" + "".join(services))

    def run(self, *args: str, max_file_size: int | None = None) -> subprocess.CompletedProcess[str]:
        return osbuilder(*args, "--cache", str(self.store), max_file_size=max_file_size)

    def build(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = self.root / "out"
        return self.run("build", "-f", "tar", "-o", str(out), *args, str(self.spec))

    def built_file(self, member: str = HELLO) -> bytes:
        with tarfile.open(self.root / "out/system.tar") as tar:
            extracted = tar.extractfile(member)
            assert extracted is not None, member
            return extracted.read()


@pytest.fixture
def workspace(tmp_path: Path, registry: Registry) -> Workspace:
    return Workspace(tmp_path, registry, tmp_path / "store")


def files(directory: Path) -> list[str]:
    """The files in `directory`, hidden ones (a temporary .NAME.TOKEN.partial) included."""
    return sorted(path.name for path in directory.iterdir() if path.is_file())


def requests(registry: Registry, since: int) -> list[str]:
    """The paths asked of `registry` (GET or HEAD) after its log had `since` characters."""
    log = registry.log.read_text()[since:]
    return re.findall(r'"(?:GET|HEAD) (/v2/\S+) HTTP', log)


def test_a_locked_build_keeps_its_digest_after_the_tag_moves(workspace: Workspace) -> None:
    registry = workspace.registry
    image = workspace.image("one", b"one\n")
    first = push(image, registry, "test/hello", "1")
    workspace.write_spec([first.reference])

    log_size = len(registry.log.read_text())
    locked = workspace.run("lock", str(workspace.spec))
    assert locked.returncode == 0, locked.stderr
    # What the tag names and its config (to know its platform): never a layer.
    config = sha256_digest(image.config)
    assert requests(registry, log_size) == [
        "/v2/test/hello/manifests/1",
        f"/v2/test/hello/blobs/{config}",
    ]
    assert locked.stdout.splitlines() == [
        f"{first.reference} {first.digest} (new)",
        f"{workspace.lock} (1 image, linux/amd64)",
    ]
    entries = [line for line in workspace.lock.read_text().splitlines() if line[0] != "#"]
    assert entries == [f"{first.reference} {first.digest}", f"  linux/amd64 {first.digest}"]

    moved = push(workspace.image("two", b"two\n"), registry, "test/hello", "1")
    assert moved.digest != first.digest
    log_size = len(registry.log.read_text())
    built = workspace.build()
    assert built.returncode == 0, built.stderr
    assert workspace.built_file() == b"one\n"
    # The registry was asked for the locked digest, never for the tag.
    manifests = [path for path in requests(registry, log_size) if "/manifests/" in path]
    assert manifests == [f"/v2/test/hello/manifests/{first.digest}"]

    check = workspace.run("lock", "--check", str(workspace.spec))
    assert check.returncode == 1
    line = workspace.lock.read_text().splitlines().index(entries[0]) + 1
    assert check.stderr.splitlines() == [
        f"osbuilder: {workspace.lock}:{line}:1: {first.reference} has moved: locked "
        f"{first.digest}, now {moved.digest}",
        f"osbuilder: {workspace.lock} is not current; update it: osbuilder lock {workspace.spec}",
    ]

    unlocked = workspace.build("--no-lock")
    assert unlocked.returncode == 0, unlocked.stderr
    assert workspace.built_file() == b"two\n"

    relocked = workspace.run("lock", str(workspace.spec))
    assert relocked.returncode == 0, relocked.stderr
    assert relocked.stdout.splitlines()[0] == f"{first.reference} {first.digest} -> {moved.digest}"
    current = workspace.run("lock", "--check", str(workspace.spec))
    assert (current.returncode, current.stderr) == (0, "")
    assert current.stdout == f"{workspace.lock}: current (1 image, linux/amd64)\n"


def test_an_index_is_locked_with_the_manifest_of_each_platform(workspace: Workspace) -> None:
    index = build_index(workspace.root / "layouts/multi", tag="1")
    pushed = push(index, workspace.registry, "test/multi", "1")
    workspace.write_spec([pushed.reference])
    locked = workspace.run("lock", "--arch", "arm64", "--arch", "amd64", str(workspace.spec))
    assert locked.returncode == 0, locked.stderr
    amd64, arm64 = (image.digest for image in index.images)
    entries = [line for line in workspace.lock.read_text().splitlines() if line[0] != "#"]
    assert entries == [
        f"{pushed.reference} {pushed.digest}",
        f"  linux/amd64 {amd64}",
        f"  linux/arm64/v8 {arm64}",
    ]
    # A new lock keeps the platforms of the one it replaces.
    again = workspace.run("lock", str(workspace.spec))
    assert again.stdout.splitlines() == [f"{workspace.lock} (1 image, linux/amd64, linux/arm64/v8)"]

    built = workspace.build("--arch", "arm64")
    assert built.returncode == 0, built.stderr
    member = "containers/services/hello/lower/etc/platform"
    assert workspace.built_file(member) == b"linux/arm64/v8\n"


def test_a_lock_without_the_platform_being_built_says_which(workspace: Workspace) -> None:
    index = build_index(workspace.root / "layouts/multi", tag="1")
    pushed = push(index, workspace.registry, "test/multi", "1")
    workspace.write_spec([pushed.reference])
    assert workspace.run("lock", "--arch", "amd64", str(workspace.spec)).returncode == 0
    built = workspace.build("--arch", "arm64")
    assert built.returncode == 1
    line = len([line for line in workspace.lock.read_text().splitlines() if line[0] == "#"]) + 1
    assert built.stderr == (
        f"osbuilder: {workspace.lock}:{line}:1: linux/arm64/v8 is not locked (the lock holds "
        "linux/amd64); lock every platform you build: osbuilder lock --arch amd64 --arch arm64 "
        f"{workspace.spec}\n"
    )
    assert not (workspace.root / "out/system.tar").exists()


def test_an_image_added_to_the_spec_after_locking_is_told_at_its_line(
    workspace: Workspace,
) -> None:
    first = workspace.locked_hello()
    other = push(workspace.image("other", b"other\n"), workspace.registry, "test/other", "1")
    workspace.write_spec([first.reference, other.reference])

    built = workspace.build()
    assert built.returncode == 1
    assert built.stderr == (
        f"osbuilder: {workspace.spec}:5:12: services[1].image: {other.reference} is not in the "
        f"lock {workspace.lock}; lock it: osbuilder lock {workspace.spec}\n"
    )
    check = workspace.run("lock", "--check", str(workspace.spec))
    assert check.returncode == 1
    assert check.stderr.splitlines()[0] == built.stderr.strip()

    # ...and one the spec no longer names, at the lock's line.
    assert workspace.run("lock", str(workspace.spec)).returncode == 0
    workspace.write_spec([other.reference])
    line = next(
        number
        for number, text in enumerate(workspace.lock.read_text().splitlines(), 1)
        if text.startswith(first.reference + " ")
    )
    built = workspace.build()
    assert built.returncode == 1
    assert built.stderr == (
        f"osbuilder: {workspace.lock}:{line}:1: {first.reference} is locked, but the spec no "
        f"longer names it; write the lock afresh: osbuilder lock {workspace.spec}\n"
    )


def test_a_lock_with_a_merge_conflict_stops_the_build_and_lock_writes_it_afresh(
    workspace: Workspace,
) -> None:
    workspace.locked_hello()
    good = workspace.lock.read_text()
    lines = good.splitlines()
    conflicted = [*lines[:-2], "<<<<<<< ours", *lines[-2:], "=======", ">>>>>>> theirs"]
    workspace.lock.write_text("\n".join(conflicted) + "\n")

    built = workspace.build()
    assert built.returncode == 1
    assert built.stderr == (
        f"osbuilder: {workspace.lock}:{len(lines) - 1}:1: a merge conflict (<<<<<<<) is left in "
        "the lock: settle the spec's conflict, then write the lock afresh: osbuilder lock "
        f"{workspace.spec}\n"
    )
    relocked = workspace.run("lock", str(workspace.spec))
    assert relocked.returncode == 0, relocked.stderr
    assert workspace.lock.read_text() == good


def test_a_failed_write_leaves_the_previous_lock_and_no_partial_file(
    workspace: Workspace,
) -> None:
    first = workspace.locked_hello()
    before = workspace.lock.read_bytes()
    push(workspace.image("two", b"two\n"), workspace.registry, "test/hello", "1")
    # The moved image into the store first: the only file `lock` then writes is the lock.
    assert workspace.run("pull", first.reference).returncode == 0

    failed = workspace.run("lock", str(workspace.spec), max_file_size=len(before) // 2)
    assert failed.returncode == 1
    assert failed.stderr == f"osbuilder: {workspace.lock}: cannot write the lock: File too large\n"
    assert workspace.lock.read_bytes() == before
    assert files(workspace.root) == ["system.yml", "system.yml.lock"]


def test_a_lock_stopped_while_it_resolves_leaves_no_file(
    workspace: Workspace, fault_proxy: StartFaultProxy
) -> None:
    proxy = fault_proxy(workspace.registry)
    push(workspace.image("one", b"one\n"), workspace.registry, "test/hello", "1")
    rule = proxy.inject(Slow(bytes_per_second=200), method="GET", path="/manifests/", times=1)
    workspace.write_spec([f"{proxy.host}/test/hello:1"])
    status, stderr = terminated_when(
        lambda: rule.fired > 0,  # stopped while the manifest trickles in
        *("lock", "--cache", str(workspace.store), str(workspace.spec)),
    )
    assert (status, stderr) == (128 + signal.SIGTERM, "osbuilder: terminated\n")
    assert files(workspace.root) == ["system.yml"]


def test_images_complete_in_the_store_are_locked_from_there_offline(tmp_path: Path) -> None:
    """As `build` takes them: a package built here (`osbuilder pkg build`) is in no registry."""
    store = ContentStore(tmp_path / "store")
    store_image(store, "osbuilder/local:1", {"etc/hello": b"local\n"})
    digest = store.lookup("docker.io/osbuilder/local:1")
    assert digest is not None
    spec = tmp_path / "local.yml"
    spec.write_text("services:\n  - name: hello\n    image: osbuilder/local:1\n")
    cache = ["--cache", str(store.root)]
    locked = osbuilder("lock", "--offline", *cache, str(spec))
    assert locked.returncode == 0, locked.stderr
    entries = (tmp_path / "local.yml.lock").read_text().splitlines()
    assert f"osbuilder/local:1 {digest.digest}" in entries

    # The store's name moves to other content: the locked build keeps the locked digest.
    store_image(store, "osbuilder/local:1", {"etc/hello": b"moved\n"})
    out = tmp_path / "out"
    built = osbuilder("build", "--offline", *cache, "-f", "tar", "-o", str(out), str(spec))
    assert built.returncode == 0, built.stderr
    with tarfile.open(out / "local.tar") as tar:
        extracted = tar.extractfile(HELLO)
        assert extracted is not None
        assert extracted.read() == b"local\n"
    check = osbuilder("lock", "--check", "--offline", *cache, str(spec))
    assert check.returncode == 1
    assert f"osbuilder/local:1 has moved: locked {digest.digest}, now sha256:" in check.stderr
