"""DIR/build.lock: the exact Debian packages a recipe is built from, one line each.

    # (comments)
    osbuilder-pkg-lock 1
    request extract redis-server
    source amd64 bookworm http://deb.debian.org/debian 2025-05-17T09:13:53Z
    amd64 libc6 2.36-9+deb12u10 amd64 bookworm sha256:8d7... pool/main/g/glibc/libc6_...deb
    end

`request` is what the recipe asked for (its variant and packages), so a recipe changed
since it was locked is noticed. A `source` line is an archive the resolution read, for one
architecture: its suite, URL and the Date of the Release file it used. A package line is
one package of an architecture's dependency closure: the architecture built, the
package's name, version and own architecture (`all` or the same), the suite that served
it, the SHA256 its signed index gives and its path below the archive's root (the same on
every mirror and snapshot of that archive). Lines are sorted, so an update is a diff of
the packages that moved; `end` closes the file, so a lock cut short is noticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from msgspec import Struct

from osbuilder.errors import UserError

LOCK_FILE = "build.lock"
MAGIC = "osbuilder-pkg-lock"
VERSION = "1"

_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_CONFLICT = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")


class LockedSource(Struct, frozen=True):
    architecture: str
    suite: str
    url: str
    date: str  # the Release file's Date, as RFC 3339 UTC


class LockedPackage(Struct, frozen=True, order=True):
    architecture: str  # the architecture built
    name: str
    version: str
    package_architecture: str  # the .deb's own: the architecture built, or `all`
    suite: str
    sha256: str  # "sha256:HEX"
    filename: str  # below the archive's root: pool/main/...

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.architecture})"

    @property
    def deb_name(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


class PackageLock(Struct, frozen=True):
    request: tuple[str, ...]  # the variant, then the packages
    sources: tuple[LockedSource, ...]
    packages: tuple[LockedPackage, ...]

    @property
    def architectures(self) -> list[str]:
        return sorted({p.architecture for p in self.packages})

    def packages_for(self, architecture: str) -> list[LockedPackage]:
        return [p for p in self.packages if p.architecture == architecture]

    def sources_for(self, architecture: str) -> list[LockedSource]:
        return [s for s in self.sources if s.architecture == architecture]

    def replace_architecture(
        self,
        architecture: str,
        sources: Iterable[LockedSource],
        packages: Iterable[LockedPackage],
    ) -> PackageLock:
        """This lock with `architecture`'s resolution replaced (or added)."""
        return PackageLock(
            self.request,
            # Sources stay in the order apt read them (an image's sources.list lists them so).
            tuple(
                sorted(
                    [*(s for s in self.sources if s.architecture != architecture), *sources],
                    key=lambda source: source.architecture,
                )
            ),
            tuple(
                sorted([*(p for p in self.packages if p.architecture != architecture), *packages])
            ),
        )


def format_lock(lock: PackageLock, directory: str) -> str:
    lines = [
        f"# The exact Debian packages of the recipe in {directory}, for each architecture.",
        f"# Update: osbuilder pkg lock {directory}   Check: osbuilder pkg lock --check {directory}",
        f"{MAGIC} {VERSION}",
        "request " + " ".join(lock.request),
        *(f"source {s.architecture} {s.suite} {s.url} {s.date}" for s in lock.sources),
        *(
            " ".join(
                (
                    p.architecture,
                    p.name,
                    p.version,
                    p.package_architecture,
                    p.suite,
                    p.sha256,
                    p.filename,
                )
            )
            for p in sorted(lock.packages)
        ),
        "end",
    ]
    return "\n".join(lines) + "\n"


class LockInvalid(UserError):
    pass


def parse_lock(text: str, path: Path) -> PackageLock:
    """The lock in `text` (read from `path`); a malformed one is a LockInvalid at its line."""
    directory = path.parent
    fix = f"run `osbuilder pkg lock {directory}` to write it anew"

    def invalid(number: int, message: str) -> LockInvalid:
        return LockInvalid(f"{path}:{number}: {message}; {fix}")

    request: tuple[str, ...] | None = None
    sources: list[LockedSource] = []
    packages: list[LockedPackage] = []
    seen: set[tuple[str, str]] = set()
    header = ended = False
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    elif text:
        raise invalid(len(lines), "the file ends in the middle of a line: it was cut short")
    for number, line in enumerate(lines, 1):
        if line.startswith(_CONFLICT):
            raise invalid(number, "a merge conflict is left in the lock")
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if ended:
            raise invalid(number, "text after the closing `end` line")
        if not header:
            if words != [MAGIC, VERSION]:
                raise invalid(
                    number, f"not an osbuilder package lock (expected `{MAGIC} {VERSION}`)"
                )
            header = True
        elif words[0] == "end" and len(words) == 1:
            ended = True
        elif words[0] == "request":
            if request is not None:
                raise invalid(number, "a second `request` line")
            if len(words) < 3:
                raise invalid(number, "`request` needs a variant and at least one package")
            request = tuple(words[1:])
        elif words[0] == "source":
            if len(words) != 5:
                raise invalid(number, "a source line is `source ARCH SUITE URL DATE`")
            sources.append(LockedSource(*words[1:]))
        else:
            if len(words) != 7:
                raise invalid(
                    number,
                    "a package line is `ARCH NAME VERSION PACKAGE-ARCH SUITE sha256:HEX "
                    f"FILENAME` (found {len(words)} fields)",
                )
            package = LockedPackage(*words)
            if not _SHA256.fullmatch(package.sha256):
                raise invalid(number, f"{package.sha256!r} is not a sha256:HEX digest")
            if package.package_architecture not in (package.architecture, "all"):
                raise invalid(
                    number,
                    f"a {package.package_architecture} package in the {package.architecture} "
                    "closure",
                )
            if (package.architecture, package.name) in seen:
                raise invalid(number, f"{package.name} is locked twice for {package.architecture}")
            if not any(
                s.architecture == package.architecture and s.suite == package.suite for s in sources
            ):
                raise invalid(
                    number, f"suite {package.suite} has no source line for {package.architecture}"
                )
            seen.add((package.architecture, package.name))
            packages.append(package)
    if not ended:
        raise invalid(
            len(lines) + 1 if lines else 1, "no closing `end` line: the lock was cut short"
        )
    if request is None:
        raise invalid(1, "no `request` line")
    return PackageLock(request, tuple(sources), tuple(packages))


def read_lock(directory: Path) -> PackageLock | None:
    """DIR/build.lock, or None when the recipe has none."""
    path = directory / LOCK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise LockInvalid(
            f"{path}:1: not UTF-8 text; run `osbuilder pkg lock {directory}` to write it anew"
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_lock(text, path)
