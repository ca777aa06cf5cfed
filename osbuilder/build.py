"""`osbuilder build`: spec files to output files, the whole pipeline.

spec (validated, merged) -> images (store, pulled when missing) -> one
assembled tree (contents spooled next to the outputs) -> each requested
format, written atomically. SOURCE_DATE_EPOCH sets the time of everything
osbuilder generates; with the same spec and store contents the outputs are
bit-identical.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from osbuilder.assemble.images import ImageSource
from osbuilder.assemble.system import AssembledSystem, assemble
from osbuilder.assemble.tree import Spool, Tree
from osbuilder.errors import UserError
from osbuilder.formats import FORMATS, WriteOptions
from osbuilder.oci.imagewriter import source_date_epoch
from osbuilder.spec import load_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    path: Path
    size: int
    sha256: str

    def as_json(self) -> dict[str, str | int]:
        return {"path": str(self.path), "size": self.size, "sha256": self.sha256}


def build(
    spec_files: Sequence[Path],
    images: ImageSource,
    *,
    formats: Sequence[str],
    output_dir: Path,
    name: str,
    options: WriteOptions,
) -> list[Output]:
    loaded = load_spec(spec_files)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"{output_dir}: cannot create the output directory: {exc.strerror}"
        ) from None
    epoch = source_date_epoch()
    with (
        images.store.using(),
        tempfile.TemporaryDirectory(dir=output_dir, prefix=".osbuilder-spool-") as spool,
    ):
        contents = Spool(Path(spool))
        try:
            system = assemble(loaded.spec, images, Tree(contents), epoch)
            contents.flush()
            paths = _write(system, formats, output_dir, name, options)
        finally:
            contents.close()
    return [_describe(path) for path in paths]


def _write(
    system: AssembledSystem,
    formats: Sequence[str],
    output_dir: Path,
    name: str,
    options: WriteOptions,
) -> list[Path]:
    written: list[Path] = []
    for format_name in dict.fromkeys(formats):
        log.info("writing %s", format_name)
        written += FORMATS[format_name](system, output_dir, name, options)
    return written


def _describe(path: Path) -> Output:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return Output(path, path.stat().st_size, digest.hexdigest())
