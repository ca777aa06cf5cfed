"""`osbuilder build`: spec files to output files, the whole pipeline.

spec (validated, merged; the digests of its lock when it has one, see lock.py) ->
images (store, pulled when missing) -> their layers unpacked (once: the store keeps
them, see assemble/snapshots.py) -> one assembled tree (generated contents spooled
next to the outputs) -> each requested format, written atomically. SOURCE_DATE_EPOCH
sets the time of everything osbuilder generates; with the same spec and store contents
the outputs are bit-identical.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from msgspec import structs

from osbuilder.assemble.images import ImageSource
from osbuilder.assemble.sbom import DEFAULT_PATH as SBOM_PATH
from osbuilder.assemble.snapshots import Snapshots
from osbuilder.assemble.system import assemble
from osbuilder.assemble.tree import Spool, Tree
from osbuilder.atomicfile import abandoned, locked, remove_abandoned
from osbuilder.epoch import source_date_epoch
from osbuilder.errors import OsbuilderError, UserError, cannot_write
from osbuilder.formats.catalog import (
    DEFAULT_FORMAT,
    FORMATS,
    VERITY_ROOTS,
    names,
    rooted_in,
    squashfs_root_media,
    verity_formats,
)
from osbuilder.formats.job import WriteJob, WriteOptions
from osbuilder.formats.outputfile import Output, output_directory
from osbuilder.formats.uefi_signing import KEY_OPTION, signable_formats
from osbuilder.lock import build_pins
from osbuilder.pkg.tag import template_reference
from osbuilder.spec import load_spec
from osbuilder.spec.lock import lock_path
from osbuilder.trust.verify import TrustedNames

log = logging.getLogger(__name__)

SPOOL_PREFIX = ".osbuilder-spool-"


@dataclass
class BuildFacts:
    """What a build was made from, filled in by `build` for those who record it (a push
    of the system: systems/artifact.py BuildRecord)."""

    spec_digest: str | None = None  # sha256 of the merged spec as canonical JSON
    lock_digest: str | None = None  # sha256 of the lock file the images were taken by
    images: dict[str, str] = field(default_factory=dict)  # spec reference -> digest
    sbom: bytes | None = None  # the SPDX document written into the root


def build(
    spec_files: Sequence[Path | str],
    images: ImageSource,
    *,
    formats: Sequence[str],
    output_dir: Path,
    name: str,
    options: WriteOptions,
    decompress_kernel: bool = False,
    sbom: str | None = SBOM_PATH,
    locked: bool = True,
    dedup: bool = True,
    facts: BuildFacts | None = None,
) -> list[Output]:
    """Build `spec_files` in each of `formats`; `locked`: take the images by the digests of
    the spec's lock, when it has one; `dedup`: identical files of the containers' read-only
    roots stored once (assemble/dedup.py). `facts`, when given, is filled in."""
    loaded = load_spec(spec_files, template_reference)
    # Whatever step finds a value of the spec it cannot build (an image missing from the
    # store, a cmdline a boot loader cannot take) raises SpecValueError: said at its line.
    with loaded.locating():
        if facts is not None:
            canonical = json.dumps(loaded.spec.to_data(), sort_keys=True, separators=(",", ":"))
            facts.spec_digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
        for warning in loaded.warnings:
            log.warning("%s", warning)
        if locked:
            pins = build_pins([str(spec) for spec in spec_files], loaded, images.target)
            images = structs.replace(images, pins=pins)
            if pins and facts is not None:
                facts.lock_digest = _lock_digest(str(spec_files[0]))
        if (trust := loaded.spec.trust) is not None and images.verifier is not None:
            covered = TrustedNames.of(trust.image or [], trust.org or [])
            images = structs.replace(images, verifier=replace(images.verifier, covered=covered))
        _check_formats(formats, options, images.target.architecture)
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"{output_dir}: cannot create the output directory: {exc.strerror}"
            ) from None
        epoch = source_date_epoch()
        with images.store.using(), _spool_directory(output_dir) as spool:
            contents = Spool(Path(spool))
            try:
                snapshots = _snapshots(images, Path(spool))
                system = assemble(
                    loaded.spec,
                    images,
                    Tree(contents),
                    epoch,
                    snapshots,
                    decompress_kernel=decompress_kernel,
                    sbom=sbom,
                    dedup=dedup,
                )
                contents.flush()
                if facts is not None:
                    facts.images = dict(system.references)
                    entry = system.tree.get(sbom) if sbom is not None else None
                    if entry is not None and entry.content is not None:
                        facts.sbom = entry.content.read_bytes()
                scratch = Path(spool) / "formats"  # the writers' intermediate files
                _make_directory(scratch)
                with output_directory(output_dir, digests=options.digests) as outputs:
                    job = WriteJob(
                        system,
                        outputs,
                        name,
                        options,
                        tuple(dict.fromkeys(formats)),
                        epoch,
                        scratch,
                    )
                    return _write(job)
            finally:
                contents.close()


@contextmanager
def _spool_directory(output_dir: Path) -> Iterator[str]:
    """Where the build keeps what it generates, next to the outputs (removed at the end).

    Locked while the build runs, so that a later build can tell what a killed one left
    (here and as temporary output files) and remove it.
    """
    _remove_abandoned(output_dir)
    try:
        spool = tempfile.TemporaryDirectory(dir=output_dir, prefix=SPOOL_PREFIX)
    except OSError as exc:
        raise cannot_write(output_dir, exc) from None
    with spool as path, locked(Path(path)):
        yield path


def _lock_digest(spec: str) -> str | None:
    path = lock_path(spec)
    try:
        return None if path is None else "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _make_directory(path: Path) -> None:
    try:
        path.mkdir()
    except OSError as exc:
        raise cannot_write(path, exc) from None


def _remove_abandoned(output_dir: Path) -> None:
    removed = remove_abandoned(output_dir)
    for spool in output_dir.glob(f"{SPOOL_PREFIX}*"):
        with abandoned(spool) as gone:
            if gone:
                shutil.rmtree(spool, ignore_errors=True)
                removed += 1
    if removed:
        log.info("%s: removed %d files left by an interrupted build", output_dir, removed)


def _snapshots(images: ImageSource, scratch: Path) -> Snapshots:
    """The store's snapshots; where they cannot be kept (a read-only store), throwaway
    ones in `scratch`."""
    store = images.store
    try:
        return Snapshots(store.snapshots, store.open_blob)
    except OSError as exc:
        log.warning(
            "%s: cannot keep unpacked layers there (%s); every build will unpack them again",
            store.snapshots,
            exc.strerror or exc,
        )
        return Snapshots(scratch / "snapshots", store.open_blob)


def _check_formats(formats: Sequence[str], options: WriteOptions, architecture: str) -> None:
    """Refuse at once what could not be written: an unknown format, --root squashfs or
    --verity where it does not apply, a medium for an architecture its boot loader cannot
    start."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    if options.root == "squashfs":
        _check_squashfs_root(formats)
    if options.secure_boot is not None:
        _check_signable(formats)
    if options.verity:
        _check_verity(formats, options.root)
    for name in formats:
        allowed = FORMATS[name].architectures
        if allowed is not None and architecture not in allowed:
            raise UserError(
                f"{name} is made for {' or '.join(allowed)} PCs, not {architecture}; "
                f"build {DEFAULT_FORMAT} or tar for it"
            )


def _check_squashfs_root(formats: Sequence[str]) -> None:
    """--root squashfs: only with formats that can keep the root on a squashfs."""
    squashfs_kernels = " or ".join(names(rooted_in("squashfs")))
    for name in formats:
        if FORMATS[name].root == "initrd" and not FORMATS[name].squashfs_root:
            raise UserError(
                f"--root squashfs: {name} keeps the root in its initrd; build it without "
                f"--root (for a kernel with a squashfs root: -f {squashfs_kernels})"
            )
    if not any(FORMATS[name].squashfs_root for name in formats):
        disks = names(squashfs_root_media())
        raise UserError(
            f"--root squashfs is for the disk formats ({', '.join(disks)}); "
            f"{squashfs_kernels} has its root on a squashfs anyway"
        )


def _check_signable(formats: Sequence[str]) -> None:
    """--secure-boot-key: only with formats whose unified kernel image it signs."""
    signable = names(signable_formats())
    for name in formats:
        if name not in signable:
            raise UserError(
                f"{KEY_OPTION}: {name} has no unified kernel image to sign; build it without "
                f"the key (the signed formats: {', '.join(signable)})"
            )


def _check_verity(formats: Sequence[str], root: str) -> None:
    """--verity: only with formats whose root is then an image a hash tree can follow."""
    for name in formats:
        record = FORMATS[name]
        if record.root_with(root) in VERITY_ROOTS:
            continue
        if record.carries_verity:  # a disk without --root squashfs
            raise UserError(
                f"--verity: {name} keeps the root in its initrd, which dm-verity cannot "
                "check; add --root squashfs"
            )
        where = "has no root image" if record.root == "tar" else "keeps the root in its initrd"
        raise UserError(
            f"--verity: {name} {where}, which dm-verity cannot check; build "
            f"{', '.join(names(verity_formats()))} (the disks with --root squashfs)"
        )


def _write(job: WriteJob) -> list[Output]:
    """Each format's files; a writer's error says which format it stopped (a SpecValueError
    stays one, for its value's FILE:LINE)."""
    written: list[Output] = []
    for format_name in job.formats:
        log.info("writing %s", format_name)
        try:
            # (a file several formats share, NAME-efi.pcrs.json, is written and listed once)
            written += [o for o in FORMATS[format_name].writer()(job) if o not in written]
        except OsbuilderError as error:
            raise error.prefixed(format_name) from error
    return written
