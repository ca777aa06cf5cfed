"""Loading specs: parse, validate each file, merge, check across entries.

`load_spec` is what every command uses; it reports all problems of all files
at once, each at FILE:LINE:COL.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from msgspec import Struct, field

from osbuilder.errors import UserError
from osbuilder.spec.checks import cross_checks
from osbuilder.spec.diagnostics import diagnostics_from
from osbuilder.spec.merge import merge_documents
from osbuilder.spec.model import Spec
from osbuilder.spec.remote import fetch_spec, is_url
from osbuilder.spec.source import (
    Diagnostic,
    Document,
    SpecSyntaxError,
    SpecValueError,
    load_document,
)
from osbuilder.spec.templates import PackageResolver, expand_templates
from osbuilder.spec.validation import parse, problems


class SpecInvalid(UserError):
    """One or more spec files have errors; `diagnostics` holds every one."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


class LoadedSpec(Struct):
    """A valid spec with the locations of its values, and any warnings."""

    spec: Spec
    document: Document
    warnings: list[Diagnostic] = field(default_factory=list)

    def locate(self, error: SpecValueError) -> UserError:
        """`error` with FILE:LINE:COL of its value in front of each line, as validation
        reports."""
        where = self.document.value_location(error.path)
        return UserError("\n".join(f"{where}: {line}" for line in str(error).splitlines()))

    @contextmanager
    def locating(self) -> Iterator[None]:
        """Work on this spec (a build, a lock): a SpecValueError raised inside, whatever
        raised it, is reported at its value's FILE:LINE:COL."""
        try:
            yield
        except SpecValueError as error:
            raise self.locate(error) from None


Checked = tuple["LoadedSpec | None", list[Diagnostic]]


STDIN = "-"  # as a spec file: standard input
STDIN_NAME = "<stdin>"  # its name in diagnostics


def check_specs(paths: Sequence[Path | str], packages: PackageResolver | None = None) -> Checked:
    """Validate and merge spec files ("-": standard input; an http(s) URL is fetched);
    return the spec (if valid) and all diagnostics. `packages` expands `@pkg:` templates
    (see templates.py)."""
    sources: list[tuple[str, str | bytes | None]] = []
    for path in paths:
        if str(path) == STDIN:
            if any(name == STDIN_NAME for name, _ in sources):
                raise UserError("- (standard input) can be given only once")
            if sys.stdin is None:  # started without one (a daemon, a detached job)
                raise UserError("- names standard input, and there is none")
            sources.append((STDIN_NAME, sys.stdin.buffer.read()))
            continue
        if is_url(str(path)):
            sources.append((str(path), fetch_spec(str(path))))
            continue
        if Path(path).is_dir():
            raise UserError(f"{path}: a directory, not a spec file (give its .yml files)")
        if not Path(path).is_file():
            raise UserError(f"{path}: no such spec file")
        sources.append((str(path), None))
    return check_sources(sources, packages)


def check_sources(
    sources: Sequence[tuple[str, str | bytes | None]], packages: PackageResolver | None = None
) -> Checked:
    """Like check_specs for (name, text) pairs; a text of None is read from the file `name`."""
    if not sources:
        raise UserError("no spec file given")
    paths = [name for name, _ in sources]
    documents: list[Document] = []
    diagnostics: list[Diagnostic] = []
    for name, text in sources:
        try:
            document = load_document(name, text)
        except SpecSyntaxError as exc:
            diagnostics.append(exc.diagnostic)
            continue
        except OSError as exc:
            raise UserError(f"{name}: cannot read spec: {exc.strerror or exc}") from None
        if document.data is None:  # an empty file is an empty spec
            document.data = {}
        template_errors = expand_templates(document, STDIN_NAME, packages)
        unexpanded = {d.path for d in template_errors}  # (their own error says enough)
        diagnostics += template_errors
        diagnostics += [d for d in _schema_errors(document) if d.path not in unexpanded]
        if isinstance(document.data, dict):
            documents.append(document)

    merged = merge_documents(documents) if documents else None
    if merged is not None:
        diagnostics += cross_checks(merged)
    order = {p: i for i, p in enumerate(paths)}
    diagnostics.sort(
        key=lambda d: (order.get(d.location.file, len(order)), d.location.line, d.location.column)
    )
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors or merged is None:
        return None, diagnostics
    spec = parse(Spec, merged.data)
    warnings = [d for d in diagnostics if d.severity == "warning"]
    return LoadedSpec(spec, merged, warnings), diagnostics


def load_spec(paths: Sequence[Path | str], packages: PackageResolver | None = None) -> LoadedSpec:
    """Like check_specs, but raise SpecInvalid listing every error."""
    loaded, diagnostics = check_specs(paths, packages)
    if loaded is None:
        raise SpecInvalid([d for d in diagnostics if d.severity == "error"])
    return loaded


def _schema_errors(document: Document) -> list[Diagnostic]:
    return diagnostics_from(problems(Spec, document.data), document)
