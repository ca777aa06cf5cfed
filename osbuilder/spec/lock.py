"""The spec lock, SPEC.lock: the digest of every image a spec names.

`osbuilder lock SPEC...` writes it beside the first spec file given; it covers the one
spec those files merge into. `osbuilder build` then takes each image by its locked
digest. The file is plain text, one block per image, sorted, so that an update is a
diff to review:

    # comments
    REFERENCE DIGEST
      PLATFORM MANIFEST-DIGEST

REFERENCE is the image as the spec writes it (templates such as `@pkg:` expanded), DIGEST
what it named when locked (an index, or a single manifest); each indented line under it
is the manifest of one platform locked (`os/architecture[/variant]`, as an index names
it). Blank lines and lines starting with `#` are ignored.

Everything wrong in a lock is reported at its FILE:LINE:COL with the fix, as spec
errors are: a malformed line, an image the spec names that the lock lacks (at the
spec's line), an entry the spec no longer names, a platform not locked.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path

from msgspec import Struct, structs

from osbuilder.errors import UserError
from osbuilder.oci.model import DIGEST_PATTERN
from osbuilder.oci.platform import parse_platform
from osbuilder.oci.reference import parse_reference
from osbuilder.spec.images import image_references
from osbuilder.spec.loader import STDIN, LoadedSpec, SpecInvalid
from osbuilder.spec.remote import is_url
from osbuilder.spec.source import Diagnostic, Location

LOCK_SUFFIX = ".lock"

_HEADER = """\
# osbuilder spec lock: the digest of every image the spec names; `osbuilder build` takes
# each image by these digests. In this directory, update it with `{update}`,
# check it with `{check}`.
# Each image: the reference as the spec writes it and the digest it names (an index or a
# manifest); indented under it, the manifest of each platform locked.
"""
_CONFLICT_MARKERS = ("<<<<<<<", "|||||||", "=======", ">>>>>>>")
_WORD = re.compile(r"\S+")


class LockedImage(Struct, frozen=True):
    reference: str  # as the spec writes it
    digest: str  # what it named: an index, or a single manifest
    manifests: dict[str, str]  # platform (os/architecture[/variant]) -> its manifest's digest
    line: int = 0  # where the lock file has it (0: resolved, not read)


class SpecLock(Struct, frozen=True):
    file: str  # the lock file's name, as messages give it
    images: dict[str, LockedImage]  # by reference

    @property
    def platforms(self) -> list[str]:
        return sorted({platform for image in self.images.values() for platform in image.manifests})

    def location(self, image: LockedImage) -> Location:
        return Location(self.file, image.line, 1)


def lock_path(spec: str) -> Path | None:
    """Where the lock of a spec whose first file is `spec` goes: beside it, as SPEC.lock;
    None for standard input or a URL, which have no place beside them."""
    if spec == STDIN or is_url(spec):
        return None
    return Path(spec + LOCK_SUFFIX)


def lock_command(
    specs: Sequence[str], platforms: Sequence[str] = (), *, check: bool = False
) -> str:
    """The command that locks `specs` (for `platforms`, when given), or checks their lock,
    as a user types it."""
    options = ["--check"] if check else []
    options += [f"--arch {platform.split('/')[1]}" for platform in platforms]
    return " ".join(["osbuilder lock", *options, *(shlex.quote(spec) for spec in specs)])


def format_lock(lock: SpecLock, specs: Sequence[str]) -> str:
    """The text of `lock`; `specs` name its spec files from the lock's directory."""
    lines = [_HEADER.format(update=lock_command(specs), check=lock_command(specs, check=True))]
    for reference in sorted(lock.images):
        image = lock.images[reference]
        lines.append(f"{reference} {image.digest}\n")
        lines += [
            f"  {platform} {image.manifests[platform]}\n" for platform in sorted(image.manifests)
        ]
    return "".join(lines)


def read_lock(path: Path, specs: Sequence[str]) -> SpecLock | None:
    """The lock at `path` for `specs` (the spec files given, in that order), or None if
    there is none; SpecInvalid at its line if it is malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the lock: {exc.strerror or exc}") from None
    return parse_lock(data, str(path), specs)


def parse_lock(data: bytes, file: str, specs: Sequence[str]) -> SpecLock:
    """The lock in `data`, read from `file`; raises SpecInvalid with the first problem."""
    return SpecLock(file, _Parser(file, specs).parse(data))


class _Parser:
    def __init__(self, file: str, specs: Sequence[str]) -> None:
        self.file = file
        self.fix = f"write the lock afresh: {lock_command(specs)}"
        self.images: dict[str, LockedImage] = {}

    def error(self, line: int, column: int, message: str) -> SpecInvalid:
        return SpecInvalid([Diagnostic(Location(self.file, line, column), (), message)])

    def parse(self, data: bytes) -> dict[str, LockedImage]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = data.count(b"\n", 0, exc.start) + 1
            raise self.error(where, 1, f"not UTF-8 text ({exc.reason}); {self.fix}") from None
        current: LockedImage | None = None
        for number, text_line in enumerate(text.split("\n"), 1):
            line = text_line.rstrip("\r")
            words = [(match.start() + 1, match.group()) for match in _WORD.finditer(line)]
            if not words or words[0][1].startswith("#"):
                continue
            if line.startswith(_CONFLICT_MARKERS):
                raise self.error(
                    number,
                    1,
                    f"a merge conflict ({line[:7]}) is left in the lock: settle the spec's "
                    f"conflict, then {self.fix}",
                )
            if line[0].isspace():
                if current is None:
                    raise self.error(
                        number,
                        words[0][0],
                        f"platform line with no image line above it; {self.fix}",
                    )
                current = self._platform(current, number, words)
            else:
                self._finish(current)
                current = self._image(number, words)
        self._finish(current)
        return self.images

    def _fields(self, number: int, words: list[tuple[int, str]], form: str) -> None:
        if len(words) != 2:
            found = "one word (a truncated file?)" if len(words) < 2 else f"{len(words)} words"
            raise self.error(number, words[0][0], f"expected '{form}', found {found}; {self.fix}")
        column, digest = words[1]
        if not DIGEST_PATTERN.fullmatch(digest):
            raise self.error(
                number,
                column,
                f"{digest!r} is not a digest (sha256: and 64 hex digits; a truncated file?); "
                f"{self.fix}",
            )

    def _image(self, number: int, words: list[tuple[int, str]]) -> LockedImage:
        self._fields(number, words, "REFERENCE DIGEST")
        reference, digest = words[0][1], words[1][1]
        try:
            parse_reference(reference)
        except UserError as exc:
            raise self.error(number, 1, f"{exc}; {self.fix}") from None
        if reference in self.images:
            first = self.images[reference].line
            raise self.error(
                number, 1, f"{reference} is locked twice (first at line {first}); {self.fix}"
            )
        return LockedImage(reference, digest, {}, number)

    def _platform(
        self, image: LockedImage, number: int, words: list[tuple[int, str]]
    ) -> LockedImage:
        self._fields(number, words, "PLATFORM DIGEST")
        (column, text), (_, digest) = words
        try:
            platform = str(parse_platform(text).index_platform())
        except UserError as exc:
            raise self.error(number, column, f"{exc}; {self.fix}") from None
        if platform in image.manifests:
            raise self.error(
                number, column, f"{platform} is locked twice for {image.reference}; {self.fix}"
            )
        return structs.replace(image, manifests={**image.manifests, platform: digest})

    def _finish(self, image: LockedImage | None) -> None:
        if image is None:
            return
        if not image.manifests:
            raise self.error(
                image.line,
                1,
                f"{image.reference} has no platform line under it (a truncated file?); {self.fix}",
            )
        self.images[image.reference] = image


def coverage_errors(
    lock: SpecLock, loaded: LoadedSpec, platforms: Sequence[str], specs: Sequence[str]
) -> list[Diagnostic]:
    """What keeps `lock` from giving every image of `loaded` (made of the files `specs`)
    for each of `platforms`: an image it lacks, at the line of the spec naming it; an
    entry the spec no longer names, and a platform not locked, at the lock's line."""
    uses = image_references(loaded.spec)
    named = {reference for reference, _ in uses}
    relock = lock_command(specs)
    found = [
        Diagnostic(
            loaded.document.value_location(path),
            path,
            f"{reference} is not in the lock {lock.file}; lock it: {relock}",
        )
        for reference, path in uses
        if reference not in lock.images
    ]
    order = {spec: index for index, spec in enumerate(specs)}
    found.sort(key=lambda d: (order.get(d.location.file, 0), d.location.line, d.location.column))
    found += [
        Diagnostic(
            lock.location(image),
            (),
            f"{image.reference} is locked, but the spec no longer names it; write the lock "
            f"afresh: {relock}",
        )
        for image in _by_line(lock)
        if image.reference not in named
    ]
    for platform in platforms:
        found += _platform_errors(lock, named, platform, specs)
    return found


def _platform_errors(
    lock: SpecLock, named: set[str], platform: str, specs: Sequence[str]
) -> list[Diagnostic]:
    lacking = [i for i in _by_line(lock) if i.reference in named and platform not in i.manifests]
    if not lacking:
        return []
    relock = lock_command(specs, sorted({*lock.platforms, platform}))
    if len(lacking) == len([i for i in lock.images.values() if i.reference in named]):
        message = (
            f"{platform} is not locked (the lock holds {', '.join(lock.platforms)}); lock "
            f"every platform you build: {relock}"
        )
        return [Diagnostic(lock.location(lacking[0]), (), message)]
    return [
        Diagnostic(
            lock.location(image),
            (),
            f"{image.reference} is not locked for {platform}; lock every platform you "
            f"build: {relock}",
        )
        for image in lacking
    ]


def moved(lock: SpecLock, current: dict[str, LockedImage]) -> Iterator[Diagnostic]:
    """What the references of `lock` name `current`ly and did not when locked, each at
    its line: (reference, locked digest, current digest)."""
    for image in _by_line(lock):
        now = current.get(image.reference)
        if now is None:
            continue
        if now.digest != image.digest:
            message = f"{image.reference} has moved: locked {image.digest}, now {now.digest}"
            yield Diagnostic(lock.location(image), (), message)
            continue
        for platform, digest in sorted(now.manifests.items()):
            locked = image.manifests.get(platform)
            if locked is not None and locked != digest:  # only a hand-edited lock says so
                message = (
                    f"{image.reference} {platform}: locked manifest {locked}, but "
                    f"{image.digest} has {digest} (a lock edited by hand?)"
                )
                yield Diagnostic(lock.location(image), (), message)


def _by_line(lock: SpecLock) -> list[LockedImage]:
    return sorted(lock.images.values(), key=lambda image: image.line)
