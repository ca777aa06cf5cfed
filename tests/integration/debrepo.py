"""A real, signed Debian archive on loopback, for tests of what osbuilder does with apt.

`running_debian_repository()` makes a throwaway OpenPGP key, serves a directory with
busybox httpd on a free 127.0.0.1 port and yields a `DebianRepository`; the
`debian_repository` fixture does the same per test (starting takes ~50 ms). Packages are
real .debs made with `dpkg-deb --build`, indexes are made by `apt-ftparchive` and the
Release file is clear-signed with gpg, so apt and mmdebstrap verify the archive exactly as
they verify Debian's: a test that passes here exercises the real signature, hash and
version logic, not a stand-in.

Layout under `root` (the served directory), as on deb.debian.org and snapshot.debian.org:

    debian/dists/SUITE/{InRelease,Release,Release.gpg}
    debian/dists/SUITE/main/binary-{amd64,arm64}/Packages{,.gz,.xz}
    debian/pool/main/P/NAME/NAME_VERSION_ARCH.deb  P: first letter, "libf" for libfoo
    archive/debian/TIMESTAMP/{dists,pool}      frozen copies made by snapshot()

Every file is replaced by rename, never rewritten in place, so a snapshot's hard links
keep the bytes it was made with.

Clients trust the key with `--keyring=KEYRING` (mmdebstrap) or a sources line with
`[signed-by=KEYRING]` (`source_line()`). apt checks signatures as the user _apt, so the
keyring is kept outside pytest's private temporary directories (see SigningKey).
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import gzip
import hashlib
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import stop_process
from tests.integration.registry import start_loopback_server

DEFAULT_SUITE = "bookworm"
ARCHITECTURES = ("amd64", "arm64")
COMPONENT = "main"
# The .debs' member and file timestamps (dpkg-deb clamps to SOURCE_DATE_EPOCH): the same
# add() call gives the same bytes on every run.
DEB_EPOCH = 1_700_000_000
# Uncompressed members: contents of the same length give a .deb of the same size, so
# replace_bytes() can change a package that only a hash check tells apart.
DEB_COMPRESSION = "none"
# -f: in the foreground, so that stop_process() ends it; -v: requests go to the log.
HTTPD = ("busybox", "httpd", "-f", "-v")
# Debian's indexes carry MD5 and SHA256 only; so do these, so that clients meet the same.
HASHES = ("-oAPT::FTPArchive::SHA1=false", "-oAPT::FTPArchive::SHA512=false")
STOP_TIMEOUT = 5.0
# gpg-agent's sockets live in GNUPGHOME when /run/user/UID is missing; a Unix socket path
# holds at most 107 bytes, and "S.gpg-agent.browser" takes 20 of them.
MAX_GNUPGHOME = 80

# Tool -> the Debian package that provides it.
REQUIRED_TOOLS = {
    "busybox": "busybox-static",
    "dpkg-deb": "dpkg",
    "apt-ftparchive": "apt-utils",
    "gpg": "gpg",
    "gpg-agent": "gpg-agent",
    "gpgconf": "gpgconf",
}

_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]+")
_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
_ARCHITECTURE = re.compile(r"all|[a-z0-9]+")
_TIMESTAMP = re.compile(r"[0-9]{8}T[0-9]{6}Z")


class DebianRepositoryError(RuntimeError):
    pass


def release_date(date: datetime.datetime) -> str:
    """A Release file's `Date:` as Debian writes it ("Sat, 10 Aug 2024 09:04:18 UTC")."""
    utc = date.astimezone(datetime.UTC).replace(microsecond=0)
    return email.utils.format_datetime(utc, usegmt=True).removesuffix("GMT") + "UTC"


def snapshot_timestamp(date: datetime.datetime) -> str:
    """snapshot.debian.org's form of a moment in a URL: 20250520T000000Z."""
    return date.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _run(
    command: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; its stderr goes into the exception, which is what a failing test shows."""
    result = subprocess.run(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise DebianRepositoryError(
            f"{command[0]} exited with {result.returncode}: "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return result


def _replace(path: Path, data: bytes) -> None:
    """Write by rename: a snapshot's hard link to the old file keeps the old bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass
class SigningKey:
    """A passphrase-less ed25519 key in its own GNUPGHOME, so nothing of the user's gpg
    state is read or changed. `keyring` is its public key as `gpg --export` writes it.

    apt verifies signatures as the unprivileged user _apt, which cannot enter pytest's
    private (0700) temporary directories: the keyring lives in a world-readable directory
    of its own under the system's temporary directory, removed by close()."""

    home: Path
    keyring: Path
    fingerprint: str
    owned: list[Path] = field(default_factory=list, repr=False)  # removed by close()

    @classmethod
    def generate(cls, directory: Path, name: str = "osbuilder test archive") -> SigningKey:
        directory.mkdir(parents=True, exist_ok=True)
        public = Path(tempfile.mkdtemp(prefix="osbuilder-keyring-"))
        public.chmod(0o755)
        key = cls(directory / "gnupg", public / "archive-keyring.gpg", "", [public])
        if len(str(key.home)) > MAX_GNUPGHOME:
            key.home = Path(tempfile.mkdtemp(prefix="osbuilder-gpg-"))
            key.owned.append(key.home)
        try:
            key.home.mkdir(mode=0o700, exist_ok=True)
            key.gpg(
                "--passphrase",
                "",
                "--quick-generate-key",
                f"{name} <archive@osbuilder.invalid>",
                "ed25519",
                "sign",
                "never",
            )
            listing = key.gpg("--with-colons", "--list-secret-keys").stdout.decode()
            key.fingerprint = next(
                line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
            )
            _replace(key.keyring, key.gpg("--export", key.fingerprint).stdout)
            key.keyring.chmod(0o644)
        except BaseException:
            key.close()
            raise
        return key

    def gpg(self, *arguments: str) -> subprocess.CompletedProcess[bytes]:
        return _run(
            ["gpg", "--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback", *arguments],
            env={**os.environ, "GNUPGHOME": str(self.home)},
        )

    def sign(self, release: Path) -> None:
        """Write InRelease (clear-signed) and Release.gpg (detached) beside `release`."""
        signer = ["--local-user", self.fingerprint, "--digest-algo", "SHA256", "--output", "-"]
        inline = self.gpg(*signer, "--clearsign", str(release)).stdout
        detached = self.gpg(*signer, "--armor", "--detach-sign", str(release)).stdout
        _replace(release.with_name("InRelease"), inline)
        _replace(release.with_name("Release.gpg"), detached)

    def close(self) -> None:
        """Stop the gpg-agent that generating or signing started (one per GNUPGHOME) and
        remove the directories made outside `directory`."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            capture_output=True,
            check=False,
        )
        for path in self.owned:
            shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class PackageSpec:
    """What add() was asked for: replace_bytes() rebuilds from it."""

    name: str
    version: str
    architecture: str
    depends: str | None
    files: Mapping[str, bytes]
    essential: bool
    priority: str

    def control(self) -> str:
        installed_kib = sum((len(data) + 1023) // 1024 for data in self.files.values())
        fields = {
            "Package": self.name,
            "Version": self.version,
            "Architecture": self.architecture,
            "Maintainer": "osbuilder tests <tests@osbuilder.invalid>",
            "Installed-Size": str(max(installed_kib, 1)),
            "Depends": self.depends,
            "Essential": "yes" if self.essential else None,
            "Section": "misc",
            "Priority": self.priority,
            "Description": f"test package {self.name}\n built by tests/integration/debrepo.py",
        }
        return "".join(f"{key}: {value}\n" for key, value in fields.items() if value)


def deb_filename(name: str, version: str, architecture: str) -> str:
    """Debian's pool name: the version without its epoch ("1:2.0-1" -> "2.0-1")."""
    return f"{name}_{version.split(':', 1)[-1]}_{architecture}.deb"


@dataclass
class DebianRepository:
    """A signed archive served at `url`: `deb [signed-by=KEYRING] URL SUITE main`.

    add(), remove() and replace_bytes() change the pool only; clients see the change
    after publish(), as with a real mirror's pool and its signed indexes."""

    root: Path  # the served directory
    url: str  # "http://127.0.0.1:PORT/debian": an archive root (dists/, pool/)
    suite: str
    keyring: Path  # binary OpenPGP keyring (gpg --export) with the signing key
    key: SigningKey = field(repr=False)
    workdir: Path = field(repr=False)
    packages: dict[tuple[str, str, str], PackageSpec] = field(default_factory=dict)
    published: datetime.datetime | None = None  # the current Release's Date (UTC)

    @property
    def archive(self) -> Path:
        return self.root / "debian"

    @property
    def server(self) -> str:
        """ "http://127.0.0.1:PORT", the server's root."""
        return self.url.removesuffix("/debian")

    def source_line(self, url: str | None = None) -> str:
        """The one-line sources.list entry for this archive (or a snapshot's URL)."""
        return f"deb [signed-by={self.keyring}] {url or self.url} {self.suite} {COMPONENT}"

    def deb(self, name: str, version: str, architecture: str = "amd64") -> Path:
        """Where the pool keeps that package (whether or not it exists)."""
        prefix = name[:4] if name.startswith("lib") and len(name) > 3 else name[0]
        filename = deb_filename(name, version, architecture)
        return self.archive / "pool" / COMPONENT / prefix / name / filename

    def sha256(self, name: str, version: str, architecture: str = "amd64") -> str:
        return hashlib.sha256(self.deb(name, version, architecture).read_bytes()).hexdigest()

    def add(
        self,
        name: str,
        version: str,
        *,
        architecture: str = "amd64",
        depends: str | None = None,
        files: Mapping[str, bytes] | None = None,
        essential: bool = False,
        priority: str = "optional",
    ) -> Path:
        """Build NAME_VERSION_ARCH.deb into the pool (publish() makes it visible).

        `files` maps paths in the package to contents; by default the package holds
        usr/share/NAME/version with VERSION, so a test can see which version it got."""
        if not _PACKAGE_NAME.fullmatch(name):
            raise ValueError(f"not a Debian package name: {name!r}")
        if not _VERSION.fullmatch(version):
            raise ValueError(f"not a Debian version: {version!r}")
        if not _ARCHITECTURE.fullmatch(architecture):
            raise ValueError(f"not a Debian architecture: {architecture!r}")
        if (name, version, architecture) in self.packages:
            raise ValueError(
                f"{name} {version} {architecture} is already in the pool (replace_bytes?)"
            )
        if files is None:
            files = {f"usr/share/{name}/version": f"{version}\n".encode()}
        spec = PackageSpec(name, version, architecture, depends, dict(files), essential, priority)
        path = self._build(spec)
        self.packages[name, version, architecture] = spec
        return path

    def remove(self, name: str, version: str, architecture: str = "amd64") -> None:
        """Delete the .deb from the pool (publish() afterwards), as a mirror drops a
        superseded version."""
        self.packages.pop((name, version, architecture))
        self.deb(name, version, architecture).unlink()

    def replace_bytes(
        self,
        name: str,
        version: str,
        architecture: str = "amd64",
        files: Mapping[str, bytes] | None = None,
    ) -> None:
        """Rebuild the .deb with other contents under the same version, as a compromised
        or sloppy mirror would (publish() afterwards). Without `files`, every file keeps
        its length but not its bytes: the .deb keeps its size, so only a hash check (not
        apt's or a client's size check) can notice."""
        old = self.packages[name, version, architecture]
        if files is None:
            files = {path: bytes(b ^ 1 for b in data) for path, data in old.files.items()}
        before = self.sha256(name, version, architecture)
        new = PackageSpec(
            name, version, architecture, old.depends, dict(files), old.essential, old.priority
        )
        self._build(new)
        self.packages[name, version, architecture] = new
        if self.sha256(name, version, architecture) == before:
            raise ValueError(f"{name} {version}: these files give the same .deb as before")

    def publish(self, date: datetime.datetime | None = None) -> None:
        """Write the indexes for amd64 and arm64 ('all' packages in both) and a signed
        Release dated `date` (default: now, and always later than the previous one, so
        that apt sees each publication as new)."""
        if date is None:
            date = datetime.datetime.now(datetime.UTC)
            if self.published is not None and date <= self.published:
                date = self.published + datetime.timedelta(seconds=1)
        date = date.astimezone(datetime.UTC).replace(microsecond=0)
        dists = self.archive / "dists" / self.suite
        for architecture in ARCHITECTURES:
            packages = _run(
                [
                    "apt-ftparchive",
                    *HASHES,
                    "--arch",
                    architecture,
                    "packages",
                    f"pool/{COMPONENT}",
                ],
                cwd=self.archive,
            ).stdout
            directory = dists / COMPONENT / f"binary-{architecture}"
            _replace(directory / "Packages", packages)
            _replace(directory / "Packages.gz", gzip.compress(packages, mtime=0))
            _replace(directory / "Packages.xz", lzma.compress(packages))
        for old in ("Release", "InRelease", "Release.gpg"):
            (dists / old).unlink(missing_ok=True)
        settings = {
            "Origin": "osbuilder-test",
            "Label": "osbuilder-test",
            "Suite": self.suite,
            "Codename": self.suite,
            "Date": release_date(date),
            "Architectures": " ".join(ARCHITECTURES),
            "Components": COMPONENT,
            "Description": "osbuilder test archive",
        }
        options = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in settings.items()]
        release = _run(["apt-ftparchive", *HASHES, *options, "release", "."], cwd=dists).stdout
        _replace(dists / "Release", release)
        self.key.sign(dists / "Release")
        self.published = date

    def snapshot(self, timestamp: str | datetime.datetime | None = None) -> str:
        """Freeze the published archive (hard links) under archive/debian/TIMESTAMP/ and
        return its URL in snapshot.debian.org's form, with the trailing slash:
        http://127.0.0.1:PORT/archive/debian/20250520T000000Z/. Later changes to the
        live archive do not reach it."""
        if self.published is None:
            raise DebianRepositoryError("publish() before snapshot()")
        if timestamp is None:
            timestamp = self.published
        if isinstance(timestamp, datetime.datetime):
            timestamp = snapshot_timestamp(timestamp)
        if not _TIMESTAMP.fullmatch(timestamp):
            raise ValueError(f"not a snapshot timestamp (like 20250520T000000Z): {timestamp!r}")
        frozen = self.root / "archive" / "debian" / timestamp
        if frozen.exists():
            raise ValueError(f"snapshot {timestamp} exists already")
        for part in ("dists", "pool"):
            shutil.copytree(self.archive / part, frozen / part, copy_function=os.link)
        return f"{self.server}/archive/debian/{timestamp}/"

    def _build(self, spec: PackageSpec) -> Path:
        """dpkg-deb --build from a scratch tree: root-owned, timestamps at DEB_EPOCH."""
        target = self.deb(spec.name, spec.version, spec.architecture)
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="deb-") as scratch:
            tree = Path(scratch) / "tree"
            (tree / "DEBIAN").mkdir(parents=True)
            (tree / "DEBIAN/control").write_text(spec.control())
            for name, data in spec.files.items():
                path = tree / name
                parts = Path(name).parts
                if not parts or Path(name).is_absolute() or ".." in parts or parts[0] == "DEBIAN":
                    raise ValueError(f"{spec.name}: not a path inside a package: {name!r}")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            for path in [tree, *tree.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
                os.utime(path, (DEB_EPOCH, DEB_EPOCH))
            built = Path(scratch) / "built.deb"
            options = ["--root-owner-group", f"-Z{DEB_COMPRESSION}"]
            _run(
                ["dpkg-deb", *options, "--build", str(tree), str(built)],
                env={**os.environ, "SOURCE_DATE_EPOCH": str(DEB_EPOCH)},
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(built, target)
        return target


def _missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


@contextlib.contextmanager
def _serve(root: Path, workdir: Path) -> Iterator[str]:
    """busybox httpd serving `root` on a free loopback port; yields "http://127.0.0.1:PORT"."""
    log = workdir / "httpd.log"
    config = workdir / "httpd.conf"  # empty: no /etc/httpd.conf rules apply
    config.touch()
    # It has no index page: a 404 is an answer too.
    process, port = start_loopback_server(
        "busybox httpd",
        lambda port: [*HTTPD, "-p", f"127.0.0.1:{port}", "-h", str(root), "-c", str(config)],
        log,
        error=DebianRepositoryError,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process, STOP_TIMEOUT)


@contextlib.contextmanager
def running_debian_repository(
    workdir: Path, *, suite: str = DEFAULT_SUITE
) -> Iterator[DebianRepository]:
    """An empty, published, served archive in `workdir`; the server and gpg-agent stop
    at exit."""
    missing = _missing_tools()
    if missing:
        packages = " ".join(sorted({REQUIRED_TOOLS[tool] for tool in missing}))
        raise DebianRepositoryError(
            f"the test Debian repository needs {', '.join(missing)}: apt-get install {packages}"
        )
    root = workdir / "www"
    (root / "debian/pool" / COMPONENT).mkdir(parents=True)
    key = SigningKey.generate(workdir)
    try:
        with _serve(root, workdir) as server:
            repository = DebianRepository(
                root=root,
                url=f"{server}/debian",
                suite=suite,
                keyring=key.keyring,
                key=key,
                workdir=workdir,
            )
            repository.publish()
            yield repository
    finally:
        key.close()


@pytest.fixture
def debian_repository(tmp_path: Path) -> Iterator[DebianRepository]:
    """A fresh archive per test (suite bookworm, nothing in it yet but signed indexes)."""
    workdir = tmp_path / "debian-repository"
    workdir.mkdir()
    with running_debian_repository(workdir) as repository:
        yield repository
