"""Recipe locks against a real, signed Debian repository on loopback (tests/integration/
debrepo.py): `pkg lock` resolves with apt, `pkg build` installs exactly what is locked and
checks every byte, and a mirror that moves on is met with one clear line or a refresh."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from osbuilder.oci.store import ContentStore
from osbuilder.pkg.lockfile import LOCK_FILE, read_lock
from tests.integration.debrepo import DebianRepository
from tests.integration.helpers import osbuilder

pytestmark = pytest.mark.integration


@pytest.fixture
def repository(debian_repository: DebianRepository) -> DebianRepository:
    """foo 1.0-1 (amd64 and arm64), which needs libfoo and the architecture-free foo-data."""
    for architecture in ("amd64", "arm64"):
        debian_repository.add("libfoo", "1.0-1", architecture=architecture)
        debian_repository.add(
            "foo", "1.0-1", architecture=architecture, depends="libfoo (>= 1.0), foo-data"
        )
    debian_repository.add("foo-data", "1.0-1", architecture="all")
    debian_repository.add("unrelated", "1.0-1")
    debian_repository.publish()
    return debian_repository


def recipe(tmp_path: Path, repository: DebianRepository, packages: str = "[foo]") -> Path:
    directory = tmp_path / "foo"
    directory.mkdir()
    (directory / "build.yml").write_text(
        f"image: osbuilder/foo\ndebian:\n  mirror: {repository.url}\n  packages: {packages}\n"
    )
    return directory


def lock(directory: Path, repository: DebianRepository, *options: str) -> None:
    """`pkg lock` with the repository's keyring kept where apt's own user cannot read it,
    as a user's private copy would be."""
    private = directory.parent / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    keyring = private / "archive.gpg"
    shutil.copyfile(repository.keyring, keyring)
    result = osbuilder("pkg", "lock", "--keyring", str(keyring), *options, str(directory))
    assert result.returncode == 0, result.stderr


def build(store: Path, directory: Path, *options: str) -> tuple[int, str, dict[str, object]]:
    """Exit status, stderr, and the image built (from --json) or {}."""
    result = osbuilder("pkg", "build", "--json", "--cache", str(store), *options, str(directory))
    built = json.loads(result.stdout)[0] if result.returncode == 0 else {}
    return result.returncode, result.stderr, built


def installed_versions(store: Path, reference: str) -> dict[str, str]:
    """The `usr/share/NAME/version` files of the image's root layer: what each test
    package installed."""
    content = ContentStore(store)
    named = content.lookup(reference)
    assert named is not None
    manifest = content.manifest(named.digest)
    versions = {}
    with tarfile.open(content.blob_path(manifest.layers[0].digest)) as layer:
        for member in layer:
            parts = member.name.removeprefix("./").split("/")
            if parts[:2] == ["usr", "share"] and parts[-1] == "version" and member.isfile():
                extracted = layer.extractfile(member)
                assert extracted is not None
                versions[parts[2]] = extracted.read().decode().strip()
    return versions


def test_lock_records_the_closure_with_the_index_digests(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    locked = read_lock(directory)
    assert locked is not None
    assert locked.request == ("extract", "foo")
    assert locked.architectures == ["amd64", "arm64"]
    for architecture in ("amd64", "arm64"):
        packages = {p.name: p for p in locked.packages_for(architecture)}
        assert sorted(packages) == ["foo", "foo-data", "libfoo"]  # not `unrelated`
        foo = packages["foo"]
        assert foo.version == "1.0-1" and foo.package_architecture == architecture
        assert foo.sha256 == "sha256:" + repository.sha256("foo", "1.0-1", architecture)
        assert packages["foo-data"].package_architecture == "all"
        [source] = locked.sources_for(architecture)
        assert source.url == repository.url and source.suite == repository.suite
        assert repository.published is not None
        assert source.date == repository.published.strftime("%Y-%m-%dT%H:%M:%SZ")
    # Locking again against the same archive changes nothing: a lock diffs only on moves.
    before = (directory / LOCK_FILE).read_bytes()
    lock(directory, repository)
    assert (directory / LOCK_FILE).read_bytes() == before


def test_a_locked_build_installs_the_locked_versions_while_the_mirror_has_newer(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    repository.add("foo", "1.1-1", depends="libfoo (>= 1.0), foo-data")
    repository.add("libfoo", "1.1-1")
    repository.publish()

    status, stderr, built = build(tmp_path / "store", directory)
    assert status == 0, stderr
    assert "unpinned" not in stderr and "no build.lock" not in stderr
    versions = installed_versions(tmp_path / "store", str(built["reference"]))
    assert versions == {"foo": "1.0-1", "libfoo": "1.0-1", "foo-data": "1.0-1"}

    check = osbuilder(
        "pkg", "lock", "--check", "--keyring", str(repository.keyring), str(directory)
    )
    assert check.returncode == 1
    assert f"{directory / LOCK_FILE}: foo 1.0-1 (amd64): the mirror has 1.1-1" in check.stdout
    assert "libfoo 1.0-1 (arm64)" not in check.stdout  # arm64 has no newer libfoo


def test_an_unlocked_recipe_builds_and_says_it_is_unpinned(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    status, stderr, built = build(
        tmp_path / "store", directory, "--keyring", str(repository.keyring)
    )
    assert status == 0, stderr
    [line] = stderr.splitlines()
    assert f"no {LOCK_FILE}" in line and f"osbuilder pkg lock {directory}" in line
    assert installed_versions(tmp_path / "store", str(built["reference"]))["foo"] == "1.0-1"


def test_the_lock_is_part_of_the_tag(tmp_path: Path, repository: DebianRepository) -> None:
    directory = recipe(tmp_path, repository)

    def tag() -> str:
        return osbuilder("pkg", "show-tag", str(directory), check=True).stdout.strip()

    unlocked = tag()
    lock(directory, repository)
    locked = tag()
    repository.add("foo", "1.1-1", depends="libfoo (>= 1.0), foo-data")
    repository.publish()
    lock(directory, repository)
    assert len({unlocked, locked, tag()}) == 3


def test_a_version_the_mirror_dropped_fails_in_one_line_and_a_snapshot_still_builds(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    snapshot = repository.snapshot()
    repository.add("foo", "1.1-1", depends="libfoo (>= 1.0), foo-data")
    repository.remove("foo", "1.0-1")
    repository.publish()
    store = tmp_path / "store"

    status, stderr, _ = build(store, directory)
    assert status == 1
    [line] = stderr.splitlines()
    assert "no longer serves foo 1.0-1 (amd64):" in line
    assert f"osbuilder pkg lock {directory}" in line and "--mirror URL" in line
    assert ContentStore(store).lookup(f"osbuilder/foo:{_tag(directory)}") is None

    check = osbuilder(
        "pkg", "lock", "--check", "--keyring", str(repository.keyring), str(directory)
    )
    assert check.returncode == 1
    assert "foo 1.0-1 (amd64): no longer on the mirror (it has 1.1-1)" in check.stdout

    status, stderr, built = build(store, directory, "--mirror", snapshot)
    assert status == 0, stderr
    assert installed_versions(store, str(built["reference"]))["foo"] == "1.0-1"


def test_refresh_missing_relocks_only_what_was_dropped(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    before = read_lock(directory)
    old_tag = _tag(directory)
    # libfoo moves on too but keeps 1.0-1: only foo's locked version is gone.
    repository.add("libfoo", "1.1-1")
    repository.add("foo", "1.1-1", depends="libfoo (>= 1.0), foo-data")
    repository.remove("foo", "1.0-1")
    repository.publish()

    status, stderr, built = build(
        tmp_path / "store", directory, "--refresh-missing", "--keyring", str(repository.keyring)
    )
    assert status == 0, stderr
    assert stderr.splitlines() == [
        f"WARNING osbuilder.pkg.lock: {directory / LOCK_FILE}: foo 1.0-1 (amd64) is gone from "
        "the mirror: locked 1.1-1 instead"
    ]
    versions = installed_versions(tmp_path / "store", str(built["reference"]))
    assert versions == {"foo": "1.1-1", "libfoo": "1.0-1", "foo-data": "1.0-1"}
    after = read_lock(directory)
    assert before is not None and after is not None
    changed = set(after.packages) - set(before.packages)
    assert {(p.architecture, p.name, p.version) for p in changed} == {("amd64", "foo", "1.1-1")}
    assert str(built["reference"]) == f"docker.io/osbuilder/foo:{_tag(directory)}"
    assert _tag(directory) != old_tag


def test_refresh_missing_moves_what_the_replacements_need(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    repository.add("libfoo", "1.1-1")
    repository.add("foo", "1.1-1", depends="libfoo (>= 1.1), foo-data")
    repository.remove("foo", "1.0-1")
    repository.publish()

    status, stderr, built = build(
        tmp_path / "store", directory, "--refresh-missing", "--keyring", str(repository.keyring)
    )
    assert status == 0, stderr
    where = f"WARNING osbuilder.pkg.lock: {directory / LOCK_FILE}"
    assert stderr.splitlines() == [
        f"{where}: foo 1.0-1 (amd64) is gone from the mirror: locked 1.1-1 instead",
        f"{where}: libfoo 1.0-1 (amd64): locked 1.1-1 instead, as what replaces the packages "
        "gone needs it",
    ]
    versions = installed_versions(tmp_path / "store", str(built["reference"]))
    assert versions == {"foo": "1.1-1", "libfoo": "1.1-1", "foo-data": "1.0-1"}


def test_other_bytes_under_a_locked_version_are_refused_and_nothing_is_stored(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    repository.replace_bytes("libfoo", "1.0-1")
    repository.publish()
    store = tmp_path / "store"

    status, stderr, _ = build(store, directory)
    assert status == 1
    [line] = stderr.splitlines()
    assert "libfoo_1.0-1_amd64.deb is not the libfoo 1.0-1 (amd64) the lock names" in line
    assert not [path for path in (store / "blobs").rglob("*") if path.is_file()]
    assert not [path for path in (store / "ingest").rglob("*") if path.is_file()]


def test_a_lock_without_the_architecture_built_says_which(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository, "--arch", "amd64")
    status, stderr, _ = build(tmp_path / "store", directory, "--arch", "arm64")
    assert status == 1
    assert stderr.strip() == (
        f"osbuilder: {directory / LOCK_FILE}: no packages locked for arm64 (it has amd64); "
        f"run `osbuilder pkg lock --arch arm64 {directory}`"
    )


def test_a_recipe_changed_since_its_lock_must_be_locked_again(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    (directory / "build.yml").write_text(
        (directory / "build.yml").read_text().replace("[foo]", "[foo, unrelated]")
    )
    status, stderr, _ = build(tmp_path / "store", directory)
    assert status == 1
    assert "locked for `extract foo`, but build.yml now asks for `extract foo unrelated`" in stderr


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text.replace("\nend\n", "\n"), "no closing `end` line"),
        (lambda text: text[: len(text) // 2], "ends in the middle of a line"),
        (
            lambda text: text.replace("amd64 foo ", "<<<<<<< HEAD\namd64 foo ", 1),
            "a merge conflict is left in the lock",
        ),
    ],
    ids=["truncated", "cut-mid-line", "conflict"],
)
def test_a_damaged_lock_is_one_located_line(
    tmp_path: Path, repository: DebianRepository, damage: object, message: str
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    path = directory / LOCK_FILE
    assert callable(damage)
    path.write_text(damage(path.read_text()))
    status, stderr, _ = build(tmp_path / "store", directory)
    assert status == 1
    [line] = stderr.splitlines()
    assert line.startswith(f"osbuilder: {path}:") and message in line
    assert line.endswith(f"run `osbuilder pkg lock {directory}` to write it anew")


def test_a_failed_lock_leaves_the_previous_one(
    tmp_path: Path, repository: DebianRepository
) -> None:
    directory = recipe(tmp_path, repository)
    lock(directory, repository)
    before = (directory / LOCK_FILE).read_bytes()
    (directory / "build.yml").write_text(
        (directory / "build.yml").read_text().replace("[foo]", "[foo, nonexistent]")
    )
    result = osbuilder("pkg", "lock", "--keyring", str(repository.keyring), str(directory))
    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert "Unable to locate package nonexistent" in line
    assert (directory / LOCK_FILE).read_bytes() == before
    assert sorted(p.name for p in directory.iterdir()) == ["build.lock", "build.yml"]


def _tag(directory: Path) -> str:
    return osbuilder("pkg", "show-tag", str(directory), check=True).stdout.strip().split(":")[-1]
