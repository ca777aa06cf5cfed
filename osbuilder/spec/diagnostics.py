"""Schema problems (spec/validation.py), told as located one-line diagnostics."""

from __future__ import annotations

from osbuilder.spec.source import DataPath, Diagnostic, Document
from osbuilder.spec.validation import Problem


def diagnostics_from(
    problems: list[Problem], document: Document, base: DataPath = ()
) -> list[Diagnostic]:
    """One diagnostic per problem, located in `document`.

    `base` is where the validated data sits in the document (for a label or a
    single section validated on its own).
    """
    found = []
    for problem in problems:
        path = (*base, *problem.path)
        if problem.key is not None:  # an unknown key: point at the key itself
            location = document.key_location((*path, problem.key))
        else:
            location = document.value_location(path)
        found.append(Diagnostic(location, path, problem.message))
    return sorted(found, key=lambda d: (d.location.line, d.location.column, d.message))
