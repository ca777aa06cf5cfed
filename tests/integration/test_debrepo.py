"""The test Debian repository is only worth having if real apt and mmdebstrap accept it
and see in it what a real mirror would show: these tests drive both against it."""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration import debrepo
from tests.integration.debrepo import DebianRepository, SigningKey

# The fixture, for this module's tests (an import would read as unused to ruff).
debian_repository = debrepo.debian_repository

# apt prints a .deb's hash under apt's name for it.
_HASHLIB = {"MD5Sum": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def url_of(repo: DebianRepository, name: str, version: str, arch: str = "amd64") -> str:
    return f"{repo.url}/{repo.deb(name, version, arch).relative_to(repo.archive)}"


def served_as_indexed(repo: DebianRepository, uris: dict[str, str]) -> bool:
    """Each URL's file in the served tree has the hash apt read from the signed index."""
    for url, printed in uris.items():
        kind, expected = printed.split(":")
        data = (repo.root / url.removeprefix(repo.server + "/")).read_bytes()
        if hashlib.new(_HASHLIB[kind], data).hexdigest() != expected:
            return False
    return True


# apt and mmdebstrap must reach 127.0.0.1 directly whatever proxy the environment names.
_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
# apt-get --print-uris: 'URL' LOCAL-NAME SIZE HASH-TYPE:HASH (apt shows its choice of hash).
_URI_LINE = re.compile(
    r"'(?P<url>[^']+)' \S+ (?P<size>\d+) (?P<type>[A-Za-z0-9]+):(?P<hash>[0-9a-f]+)"
)


class Apt:
    """apt-get with a private state and only `source_line` as its sources: nothing of
    the host's apt configuration, lists, cache or dpkg database is read or written."""

    def __init__(self, directory: Path, source_line: str, architecture: str = "amd64") -> None:
        self.directory = directory
        for sub in ("state/lists/partial", "cache/archives/partial", "download", "empty.d"):
            (directory / sub).mkdir(parents=True)
        (directory / "status").touch()
        (directory / "sources.list").write_text(source_line + "\n")
        settings = {
            "Dir::Etc::main": "/dev/null",
            "Dir::Etc::Parts": directory / "empty.d",
            "Dir::Etc::SourceList": directory / "sources.list",
            "Dir::Etc::SourceParts": directory / "empty.d",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": directory / "empty.d",
            "Dir::State": directory / "state",
            "Dir::State::status": directory / "status",
            "Dir::Cache": directory / "cache",
            "APT::Architecture": architecture,
            "APT::Architectures": architecture,
            "APT::Install-Recommends": "false",
            "Acquire::Languages": "none",
            "Debug::NoLocking": "1",
            # pytest's temporary directories are private to root: the _apt user that apt
            # would download as could not write there.
            "APT::Sandbox::User": "root",
        }
        config = directory / "apt.conf"
        config.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
        self.env = {**_ENV, "APT_CONFIG": str(config)}

    def run(self, *arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", *arguments],
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def check(self, *arguments: str, cwd: Path | None = None) -> str:
        result = self.run(*arguments, cwd=cwd)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def update(self) -> None:
        # --error-on=any: a warning (an unsigned or unreadable index) fails the update.
        self.check("update", "--error-on=any")

    def uris(self, *packages: str) -> dict[str, str]:
        """What `apt-get install` would download: URL -> the hash the index gives it."""
        output = self.check("install", "--print-uris", "-qq", *packages)
        matches = [_URI_LINE.fullmatch(line) for line in output.splitlines()]
        assert all(matches), output
        return {m["url"]: f"{m['type']}:{m['hash']}" for m in matches if m}

    def candidate(self, package: str) -> str:
        output = subprocess.run(
            ["apt-cache", "policy", package],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found = re.search(r"Candidate: (\S+)", output)
        assert found, output
        return found[1]


def test_apt_verifies_the_signature_and_resolves_the_closure(
    debian_repository: DebianRepository, tmp_path: Path
) -> None:
    repo = debian_repository
    repo.add("libfoo", "1.0-1")
    repo.add("foo-data", "1.0-1", architecture="all")
    repo.add("foo", "1:1.0-1", depends="libfoo (>= 1.0), foo-data")
    repo.add("unrelated", "2.0")
    repo.publish()
    apt = Apt(tmp_path / "apt", repo.source_line())
    apt.update()

    uris = apt.uris("foo")
    assert set(uris) == {
        url_of(repo, "foo", "1:1.0-1"),
        url_of(repo, "libfoo", "1.0-1"),
        url_of(repo, "foo-data", "1.0-1", "all"),
    }
    assert served_as_indexed(repo, uris)
    # 'all' packages are in both architectures' indexes; arm64 ones only in arm64's.
    repo.add("libfoo", "1.0-1", architecture="arm64")
    repo.add("foo", "1:1.0-1", architecture="arm64", depends="libfoo, foo-data")
    repo.publish()
    arm64 = Apt(tmp_path / "apt-arm64", repo.source_line(), architecture="arm64")
    arm64.update()
    assert set(arm64.uris("foo")) == {
        url_of(repo, "foo", "1:1.0-1", "arm64"),
        url_of(repo, "libfoo", "1.0-1", "arm64"),
        url_of(repo, "foo-data", "1.0-1", "all"),
    }


def test_apt_refuses_a_repository_signed_by_another_key(
    debian_repository: DebianRepository, tmp_path: Path
) -> None:
    other = SigningKey.generate(tmp_path / "other-key")
    try:
        apt = Apt(
            tmp_path / "apt",
            f"deb [signed-by={other.keyring}] {debian_repository.url} bookworm main",
        )
        result = apt.run("update", "--error-on=any")
    finally:
        other.close()
    assert result.returncode != 0
    assert "NO_PUBKEY" in result.stdout + result.stderr
    assert "is not signed" in result.stdout + result.stderr


@pytest.mark.parametrize("trust", ["--keyring", "signed-by"])
def test_mmdebstrap_extracts_the_package_and_its_dependencies(
    debian_repository: DebianRepository, tmp_path: Path, trust: str
) -> None:
    """Both ways of trusting the key work: --keyring with the live archive's URL, and a
    signed-by sources line with a snapshot's URL (trailing slash and all)."""
    repo = debian_repository
    repo.add("libfoo", "1.0-1", files={"usr/lib/libfoo.so.1": b"\x7fELF not really\n"})
    repo.add("foo", "1.0-1", depends="libfoo")
    repo.add("unrelated", "1.0")
    repo.publish()
    if trust == "--keyring":
        source = [f"--keyring={repo.keyring}", repo.url]
    else:
        source = [repo.source_line(repo.snapshot())]
    target = tmp_path / "root.tar"
    command = ["mmdebstrap", "--quiet", "--variant=extract", "--architectures=amd64"]
    command += ["--include=foo", repo.suite, str(target), *source]
    result = subprocess.run(
        command, env=_ENV, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    with tarfile.open(target) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        version = tar.extractfile(members["usr/share/foo/version"])
        assert version is not None
        assert version.read() == b"1.0-1\n"
        assert members["usr/lib/libfoo.so.1"].uid == 0
        assert "usr/share/unrelated/version" not in members


def test_a_newer_version_is_the_candidate_and_both_stay_downloadable(
    debian_repository: DebianRepository, tmp_path: Path
) -> None:
    repo = debian_repository
    repo.add("foo", "1.0-1")
    repo.publish()
    apt = Apt(tmp_path / "apt", repo.source_line())
    apt.update()
    assert apt.candidate("foo") == "1.0-1"

    repo.add("foo", "1.1-1")
    repo.publish()
    apt.update()
    assert apt.candidate("foo") == "1.1-1"
    download = apt.directory / "download"
    apt.check("download", "foo=1.0-1", "foo=1.1-1", cwd=download)
    for version in ("1.0-1", "1.1-1"):
        deb = (download / f"foo_{version}_amd64.deb").read_bytes()
        assert deb == repo.deb("foo", version).read_bytes()


def test_a_snapshot_keeps_serving_what_the_live_archive_removed(
    debian_repository: DebianRepository, tmp_path: Path
) -> None:
    repo = debian_repository
    repo.add("foo", "1.0-1")
    repo.publish(date=datetime.datetime(2025, 5, 20, tzinfo=datetime.UTC))
    release = (repo.archive / "dists/bookworm/Release").read_text()
    assert "Date: Tue, 20 May 2025 00:00:00 UTC" in release.splitlines()
    snapshot = repo.snapshot()  # named after the Release's date, as snapshot.debian.org
    assert snapshot == f"{repo.server}/archive/debian/20250520T000000Z/"

    repo.remove("foo", "1.0-1")
    repo.add("foo", "1.1-1")
    repo.publish()

    live = Apt(tmp_path / "live", repo.source_line())
    live.update()
    missing = live.run("install", "--print-uris", "-qq", "foo=1.0-1")
    assert missing.returncode != 0
    assert "Version '1.0-1' for 'foo' was not found" in missing.stderr

    frozen = Apt(tmp_path / "snapshot", repo.source_line(snapshot))
    frozen.update()
    assert frozen.candidate("foo") == "1.0-1"
    frozen.check("download", "foo=1.0-1", cwd=frozen.directory / "download")
    assert (frozen.directory / "download/foo_1.0-1_amd64.deb").exists()


def test_replaced_bytes_are_refused_against_the_old_index(
    debian_repository: DebianRepository, tmp_path: Path
) -> None:
    """A client that resolved before the mirror changed the bytes (not the size) sees a
    hash mismatch; one that updates afterwards sees the new hash under the same version."""
    repo = debian_repository
    repo.add("foo", "1.0-1")
    repo.publish()
    before = repo.sha256("foo", "1.0-1")
    size = repo.deb("foo", "1.0-1").stat().st_size
    stale = Apt(tmp_path / "stale", repo.source_line())
    stale.update()

    repo.replace_bytes("foo", "1.0-1")
    repo.publish()
    assert repo.sha256("foo", "1.0-1") != before
    assert repo.deb("foo", "1.0-1").stat().st_size == size
    refused = stale.run("download", "foo=1.0-1", cwd=stale.directory / "download")
    assert refused.returncode != 0
    assert "Hash Sum mismatch" in refused.stdout + refused.stderr

    fresh = Apt(tmp_path / "fresh", repo.source_line())
    fresh.update()
    assert served_as_indexed(repo, fresh.uris("foo"))


def test_debs_are_reproducible_and_root_owned(debian_repository: DebianRepository) -> None:
    repo = debian_repository
    first = repo.add("foo", "1.0-1", files={"etc/foo.conf": b"x = 1\n"}).read_bytes()
    repo.remove("foo", "1.0-1")
    second = repo.add("foo", "1.0-1", files={"etc/foo.conf": b"x = 1\n"}).read_bytes()
    assert first == second
    listing = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(repo.deb("foo", "1.0-1"))],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(listing)) as tar:
        assert {(m.uid, m.gid, m.mtime) for m in tar.getmembers()} == {(0, 0, debrepo.DEB_EPOCH)}


def test_invalid_input_is_refused_before_anything_is_built(
    debian_repository: DebianRepository,
) -> None:
    repo = debian_repository
    with pytest.raises(ValueError, match="package name"):
        repo.add("Foo", "1.0")
    with pytest.raises(ValueError, match="inside a package"):
        repo.add("foo", "1.0", files={"../escape": b""})
    repo.add("foo", "1.0")
    with pytest.raises(ValueError, match="already in the pool"):
        repo.add("foo", "1.0")
