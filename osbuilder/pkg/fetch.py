"""The .debs a lock names, downloaded and checked, as a repository mmdebstrap reads.

Each .deb is looked for by its path below the archive's root, first on the mirrors the
user gave (a snapshot archive that keeps old versions, a local mirror), then at the
archive it was locked from: any place will do, since every byte is checked against the
SHA256 the lock took from the archive's signed index. Only complete, verified files land
in the repository, and the repository holds only the locked packages, so apt inside
mmdebstrap can install those versions and nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from osbuilder import __version__
from osbuilder.errors import ExternalError, UserError
from osbuilder.pkg.debian import Mirror
from osbuilder.pkg.lockfile import LockedPackage, LockedSource, PackageLock
from osbuilder.runner import run

log = logging.getLogger(__name__)

PARALLEL_DOWNLOADS = 6
_CHUNK = 1 << 20


class PackagesGone(UserError):
    """Locked versions that no mirror serves any more."""

    def __init__(self, what: str, directory: Path, missing: Sequence[LockedPackage]) -> None:
        self.missing = list(missing)
        names = ", ".join(str(p) for p in missing)
        super().__init__(
            f"{what}: the mirror no longer serves {names}: move the lock to the mirror's "
            f"versions with `osbuilder pkg lock {directory}`, or build from a mirror that "
            "keeps them (--mirror URL, or `mirror:` in the recipe; e.g. a snapshot archive)"
        )


class ContentChanged(UserError):
    pass


def fetch_locked(
    packages: Sequence[LockedPackage],
    sources: Sequence[LockedSource],
    mirrors: Sequence[str],
    destination: Path,
    what: str,
    directory: Path,
) -> list[Path]:
    """Download `packages` into `destination`, each checked against its SHA256."""
    archive_of = {(s.architecture, s.suite): s.url for s in sources}
    with (
        httpx.Client(
            follow_redirects=True,
            timeout=httpx.Timeout(60.0, connect=10.0),
            headers={"User-Agent": f"osbuilder/{__version__}"},
        ) as client,
        ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool,
    ):

        def fetch(package: LockedPackage) -> Path | None:
            places = [*mirrors, archive_of[package.architecture, package.suite]]
            return _download(client, package, places, destination, what)

        results = list(pool.map(fetch, packages))
    missing = [p for p, path in zip(packages, results, strict=True) if path is None]
    if missing:
        raise PackagesGone(what, directory, missing)
    return [path for path in results if path is not None]


def _download(
    client: httpx.Client,
    package: LockedPackage,
    places: Sequence[str],
    destination: Path,
    what: str,
) -> Path | None:
    """The verified .deb, or None when no place has it."""
    target = destination / package.deb_name
    partial = target.with_name(target.name + ".partial")
    failures = []
    for place in dict.fromkeys(places):
        url = f"{place.rstrip('/')}/{package.filename}"
        try:
            with client.stream("GET", url) as response:
                if response.status_code in (404, 410):
                    continue
                response.raise_for_status()
                digest = hashlib.sha256()
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes(_CHUNK):
                        digest.update(chunk)
                        file.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            failures.append(f"{url}: {exc}")
            continue
        if "sha256:" + digest.hexdigest() != package.sha256:
            partial.unlink()
            raise ContentChanged(
                f"{what}: {url} is not the {package} the lock names (sha256 "
                f"{digest.hexdigest()[:16]}..., locked {package.sha256[7:23]}...): the mirror "
                "serves other bytes under that version; nothing was built"
            )
        os.replace(partial, target)
        log.debug("%s: %s", package, url)
        return target
    if failures:
        raise ExternalError(f"{what}: cannot download {package}: {'; '.join(failures[-2:])}")
    return None


def write_repository(directory: Path, suite: str) -> str:
    """Index the .debs in `directory` as a flat repository of `suite`; its sources line.

    The Release names the suite, so mmdebstrap's selection of essential packages (by
    archive or codename) finds them; nothing signs it: every .deb was checked already.
    """
    packages = run(["apt-ftparchive", "packages", "."], cwd=directory).stdout
    (directory / "Packages").write_bytes(packages)
    release = run(
        [
            "apt-ftparchive",
            f"-oAPT::FTPArchive::Release::Suite={suite}",
            f"-oAPT::FTPArchive::Release::Codename={suite}",
            "release",
            ".",
        ],
        cwd=directory,
    ).stdout
    (directory / "Release").write_bytes(release)
    # copy: apt copies the files into the root's archives, where mmdebstrap reads them.
    return f"deb [trusted=yes] copy://{directory} ./"


@contextmanager
def locked_mirror(
    lock: PackageLock,
    architecture: str,
    suite: str,
    mirrors: Sequence[str],
    what: str,
    directory: Path,
) -> Iterator[Mirror]:
    """A repository of the packages `lock` names for `architecture`, checked, for the
    duration of the block; the image's sources.list names the archives they came from."""
    sources = lock.sources_for(architecture)
    with tempfile.TemporaryDirectory(prefix="osbuilder-debs-") as tmp:
        repository = Path(tmp)
        fetch_locked(lock.packages_for(architecture), sources, mirrors, repository, what, directory)
        yield Mirror(
            lines=(write_repository(repository, suite),),
            sources_list="".join(f"deb {s.url} {s.suite} main\n" for s in sources),
        )
