"""Resolving a recipe's packages against Debian archives, with apt in a private state.

apt itself picks the dependency closure, with the configuration mmdebstrap gives it (an
empty dpkg database, no Recommends, only the architecture built), so a lock holds what
an unlocked build would install. The SHA256 of each package is read from the archive's
indexes, which apt has checked against the signed Release file; nothing is downloaded
but the indexes. Nothing of the host's apt state or sources is read or written.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import tempfile
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from debian.deb822 import Deb822
from msgspec import Struct

from osbuilder.errors import ExternalError, UserError
from osbuilder.pkg.lockfile import LockedPackage, LockedSource
from osbuilder.runner import CommandFailed, run

log = logging.getLogger(__name__)

DEBIAN_MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://security.debian.org/debian-security"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Debian releases whose default sources include -updates and -security (as mmdebstrap's).
_STABLE = ("bullseye", "bookworm", "trixie", "forky", "stable", "oldstable")


class Archive(Struct, frozen=True):
    """One `deb URL SUITE main` source."""

    url: str
    suite: str

    def line(self, keyring: Path | None) -> str:
        signed_by = f" [signed-by={keyring}]" if keyring is not None else ""
        return f"deb{signed_by} {self.url} {self.suite} main"


def archives_for(suite: str, mirror: str | None) -> list[Archive]:
    """The archives mmdebstrap reads for `suite`: the mirror given, or Debian's defaults."""
    if mirror is not None:
        return [Archive(mirror.rstrip("/"), suite)]
    archives = [Archive(DEBIAN_MIRROR, suite)]
    if suite in _STABLE:
        archives += [Archive(DEBIAN_MIRROR, f"{suite}-updates")]
        archives += [Archive(SECURITY_MIRROR, f"{suite}-security")]
    return archives


def selection(variant: str, packages: Sequence[str], suite: str, architecture: str) -> list[str]:
    """apt-get install's arguments for what mmdebstrap installs in `variant`."""
    if variant in ("extract", "custom"):
        return list(packages)

    def narrow(pattern: str) -> str:
        return (
            f"?narrow(?or(?archive(^{suite}$),?codename(^{suite}$)),"
            f"?architecture({architecture}),{pattern})"
        )

    chosen = [narrow("?essential"), *packages]
    priorities = {
        "required": "?priority(required)",
        "minbase": "?priority(required)",
        "buildd": "?priority(required)",
        "important": "?or(?priority(required),?priority(important))",
        "standard": "?or(?priority(required),?priority(important),?priority(standard))",
    }
    if variant in priorities:
        chosen.append(narrow(priorities[variant]))
    if variant in ("apt", "required", "minbase", "buildd", "important", "standard"):
        chosen.append("apt")
    if variant == "buildd":
        chosen.append("build-essential")
    return chosen


class IndexEntry(Struct, frozen=True):
    suite: str
    package_architecture: str
    sha256: str
    filename: str


class AptState:
    """Indexes of some archives for one architecture, in a private apt directory."""

    def __init__(
        self,
        root: Path,
        archives: Sequence[Archive],
        architecture: str,
        keyring: Path | None,
    ) -> None:
        self.root = root
        self.archives = list(archives)
        self.architecture = architecture
        for directory in ("lists/partial", "archives/partial", "etc"):
            (root / directory).mkdir(parents=True, exist_ok=True)
        (root / "status").touch()
        (root / "etc/sources.list").write_text(
            "".join(a.line(_keyring_for(a, keyring)) + "\n" for a in self.archives)
        )
        self._entries: dict[tuple[str, str], IndexEntry] = {}
        self._scanned: set[str] = set()
        self._files: dict[Archive, list[Path]] | None = None  # once updated

    def _options(self) -> list[str]:
        root = self.root
        settings = {
            "Dir::State": root,
            "Dir::State::Lists": root / "lists",
            "Dir::State::status": root / "status",
            "Dir::Cache": root,
            "Dir::Cache::Archives": root / "archives",
            "Dir::Etc::SourceList": root / "etc/sources.list",
            "Dir::Etc::SourceParts": "/nonexistent",
            "Dir::Etc::Preferences": root / "etc/preferences",
            "Dir::Etc::PreferencesParts": "/nonexistent",
            "APT::Architecture": self.architecture,
            "APT::Architectures": self.architecture,
            "APT::Install-Recommends": "false",
            "Acquire::Languages": "none",
            "pkgCacheGen::ForceEssential": ",",
            "Debug::NoLocking": "true",
        }
        return [f"-o{key}={value}" for key, value in settings.items()]

    def apt(self, *arguments: str) -> str:
        try:
            result = run(["apt-get", *self._options(), *arguments])
        except CommandFailed as exc:
            raise ExternalError(apt_reason(exc)) from None
        return result.stdout.decode()

    def update(self) -> None:
        log.info("reading the indexes of %s for %s", _names(self.archives), self.architecture)
        self.apt("update", "-qq")
        # apt-get update only warns about a source it could not read (exit 0).
        for archive in self.archives:
            if self._release_file(archive) is None:
                raise ExternalError(
                    f"{archive.url} {archive.suite}: apt could not read this archive's "
                    "Release file (is the URL an archive root with dists/"
                    f"{archive.suite}/?)"
                )

    def resolve(
        self, arguments: Sequence[str], pins: Iterable[LockedPackage] = ()
    ) -> list[LockedPackage]:
        """The packages `apt-get install arguments` would download into an empty root;
        `pins` are versions to keep if the archives still have them."""
        preferences = self.root / "etc/preferences"
        preferences.write_text(
            "".join(
                f"Package: {p.name}\nPin: version {p.version}\nPin-Priority: 1001\n\n" for p in pins
            )
        )
        output = self.apt("install", "--print-uris", "-qq", "--", *arguments)
        chosen = []
        for line in output.splitlines():
            if line.startswith("'"):
                deb = urllib.parse.unquote(line.split()[1])
                name, version, _ = deb.removesuffix(".deb").split("_")
                chosen.append((name, version))
        self.prepare(name for name, _ in chosen)
        resolved = [self.locked(name, version) for name, version in chosen]
        if not resolved:
            raise UserError(f"apt selected no package for {' '.join(arguments)}")
        return resolved

    def locked(self, name: str, version: str) -> LockedPackage:
        entry = self._entry(name, version)
        if entry is None:  # apt chose it from these very indexes
            raise ExternalError(f"{name} {version}: apt chose it but no index lists it")
        return LockedPackage(
            self.architecture,
            name,
            version,
            entry.package_architecture,
            entry.suite,
            entry.sha256,
            entry.filename,
        )

    def has(self, package: LockedPackage) -> bool:
        """Whether the archives still serve exactly that .deb."""
        entry = self._entry(package.name, package.version)
        return entry is not None and entry.sha256 == package.sha256

    def prepare(self, names: Iterable[str]) -> None:
        """Read the index entries of `names` (all at once: each index is read whole)."""
        wanted = set(names) - self._scanned
        if not wanted:
            return
        files = self._index_files()
        for archive in self.archives:
            for path in files.get(archive, []):
                for paragraph in self._read(path).split("\n\n"):
                    name = paragraph[len(_PACKAGE) : paragraph.find("\n")]
                    if paragraph.startswith(_PACKAGE) and name in wanted:
                        fields = _fields(paragraph)
                        self._entries.setdefault(
                            (name, fields["Version"]),
                            IndexEntry(
                                archive.suite,
                                fields["Architecture"],
                                "sha256:" + fields["SHA256"],
                                fields["Filename"],
                            ),
                        )
        self._scanned |= wanted

    def _entry(self, name: str, version: str) -> IndexEntry | None:
        self.prepare([name])
        return self._entries.get((name, version))

    def sources(self) -> list[LockedSource]:
        return [
            LockedSource(self.architecture, a.suite, a.url, self._release_date(a))
            for a in self.archives
        ]

    def _index_files(self) -> dict[Archive, list[Path]]:
        """Each archive's Packages indexes that apt holds, by `apt-get indextargets`."""
        if self._files is not None:
            return self._files
        output = self.apt(
            "indextargets", "--format", "$(SITE)\t$(RELEASE)\t$(FILENAME)", "Identifier: Packages"
        )
        files: dict[Archive, list[Path]] = {}
        for line in output.splitlines():
            site, suite, filename = line.split("\t")
            if Path(filename).is_file():
                files.setdefault(Archive(site.rstrip("/"), suite), []).append(Path(filename))
        self._files = files
        return files

    def _release_file(self, archive: Archive) -> Path | None:
        """The archive's (In)Release file, named as its indexes are up to `_dists_SUITE_`."""
        for index in self._index_files().get(archive, []):
            prefix = index.name[: index.name.index(f"_dists_{archive.suite}_")]
            for name in ("InRelease", "Release"):
                path = index.with_name(f"{prefix}_dists_{archive.suite}_{name}")
                if path.is_file():
                    return path
        return None

    def _read(self, path: Path) -> str:
        # apt may keep indexes compressed; its helper reads every format it writes.
        return run(["/usr/lib/apt/apt-helper", "cat-file", str(path)]).stdout.decode()

    def _release_date(self, archive: Archive) -> str:
        path = self._release_file(archive)
        assert path is not None  # update() checked
        text = path.read_text(errors="replace")
        if text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
            text = text.split("\n\n", 1)[1]
        date = Deb822(text.splitlines()).get("Date")
        if not date:
            return "unknown"
        when = email.utils.parsedate_to_datetime(date).astimezone(datetime.UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def apt_state(
    archives: Sequence[Archive], architecture: str, keyring: Path | None
) -> Iterator[AptState]:
    """A private apt state with the archives' indexes read."""
    with tempfile.TemporaryDirectory(prefix="osbuilder-apt-") as tmp:
        state = AptState(Path(tmp), archives, architecture, keyring)
        state.update()
        yield state


_PACKAGE = "Package: "


def _fields(paragraph: str) -> dict[str, str]:
    """The single-line fields of an index paragraph (continuation lines skipped)."""
    fields = {}
    for line in paragraph.splitlines():
        key, sep, value = line.partition(": ")
        if sep and not line[0].isspace():
            fields[key] = value.strip()
    return fields


def _keyring_for(archive: Archive, keyring: Path | None) -> Path | None:
    if keyring is not None:
        return keyring
    if archive.url in (DEBIAN_MIRROR, SECURITY_MIRROR) and DEBIAN_KEYRING.is_file():
        return DEBIAN_KEYRING
    return None  # the host's trusted keys (/etc/apt/trusted.gpg.d), as apt would


def _names(archives: Sequence[Archive]) -> str:
    return ", ".join(f"{a.url} {a.suite}" for a in archives)


def apt_reason(failure: CommandFailed) -> str:
    """apt's error lines (`E: Unable to locate package x`) are what to act on."""
    errors = [line[3:].strip() for line in failure.stderr.splitlines() if line.startswith("E:")]
    unmet = [
        line.strip() for line in failure.stderr.splitlines() if "Depends:" in line and ":" in line
    ]
    reasons = list(dict.fromkeys([*errors[:3], *unmet[:3]]))
    return "apt: " + "; ".join(reasons) if reasons else str(failure)
