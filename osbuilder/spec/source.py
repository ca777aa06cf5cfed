"""YAML documents that remember where every node came from.

PyYAML's composer gives a node graph with marks; we build plain Python data
from it ourselves so that every value (and every mapping key) has a
`Location`. Errors found later are reported at FILE:LINE:COL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import yaml
from msgspec import Struct, field
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from osbuilder.errors import UserError
from osbuilder.spec.yaml12 import (
    MERGE_TAG,
    PLAIN_TAG,
    RESOLVABLE_TAGS,
    CoreSchemaResolver,
    resolve_plain,
    resolve_tagged,
)

try:  # libyaml's parser is ~10x faster; the pure-Python one gives the same nodes
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _Loader(CoreSchemaResolver, _BaseLoader):
    """PyYAML's parser and composer; plain scalars left for YAML 1.2 resolution."""


# Bound on nodes built from one document, so that alias bombs ("billion laughs")
# fail cleanly instead of eating memory.
MAX_NODES = 1_000_000

#: A path into the data: mapping keys and list indices, e.g. ("services", 1, "env", 0).
DataPath = tuple[str | int, ...]


class Location(Struct, frozen=True):
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Diagnostic(Struct, frozen=True):
    """One problem in a spec: where, which field, and what is wrong."""

    location: Location
    path: DataPath
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        parts = [str(self.location)]
        if self.path:
            parts.append(format_path(self.path))
        if self.severity == "warning":
            parts.append("warning")
        parts.append(self.message)
        return ": ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "path": format_path(self.path),
            "severity": self.severity,
            "message": self.message,
        }


def format_path(path: DataPath) -> str:
    """`("services", 1, "env")` -> `services[1].env`; a key that is empty or has characters
    that do not print (a line break) is quoted, so the error stays on one line."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part or not part.isprintable():
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
        else:
            out += f".{part}" if out else part
    return out


class Document(Struct):
    """Data parsed from YAML, with the location of each value and each key."""

    data: Any
    origin: Location
    values: dict[DataPath, Location] = field(default_factory=dict)
    keys: dict[DataPath, Location] = field(default_factory=dict)

    def value_location(self, path: DataPath) -> Location:
        """Where the value at `path` starts (or the nearest enclosing node)."""
        return self._nearest(self.values, path)

    def key_location(self, path: DataPath) -> Location:
        """Where the key naming `path` starts; the value's location for list items."""
        if path in self.keys:
            return self.keys[path]
        return self._nearest(self.values, path)

    def _nearest(self, table: dict[DataPath, Location], path: DataPath) -> Location:
        for end in range(len(path), -1, -1):
            found = table.get(path[:end])
            if found is not None:
                return found
        return self.origin


class SpecValueError(UserError):
    """A value of a valid spec that cannot be built: a source file that is missing, an image
    that is not in the store. `path` names the value (on each line of the message, when
    there are several problems); `LoadedSpec.locating` says where it is.
    """

    def __init__(self, path: DataPath, message: str) -> None:
        prefix = f"{format_path(path)}: " if path else ""
        super().__init__("\n".join(prefix + line for line in message.splitlines()))
        self.path = path


@contextmanager
def at(path: DataPath, prefix: str = "") -> Iterator[None]:
    """Building the value at `path`: a UserError raised inside is that value's
    SpecValueError (`prefix` before its message), so that it is reported at the spec's
    line. A SpecValueError raised inside keeps its own, closer path."""
    try:
        yield
    except SpecValueError:
        raise
    except UserError as exc:
        raise SpecValueError(path, prefix + str(exc)) from None


class SpecSyntaxError(Exception):
    """The text is not YAML we accept; carries one located diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def load_document(path: Path | str, text: str | bytes | None = None) -> Document:
    """Parse one YAML spec file (or `text`, its content, e.g. standard input's); raise
    SpecSyntaxError with FILE:LINE:COL on bad YAML."""
    name = str(path)
    try:
        if text is None:
            text = Path(path).read_text(encoding="utf-8")
        elif isinstance(text, bytes):  # with the newlines read_text would give
            text = text.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise _error(name, 1, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join((exc.problem or exc.context or "invalid YAML").split())
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        if mark is not None and text[mark.index : mark.index + 1] == "\t":
            problem = "a tab cannot indent YAML; use spaces"
        raise _error(name, line, column, f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        position = exc.position if isinstance(exc.character, str) else 0
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        raise _error(
            name, line, column, f"character {exc.character!r} is not allowed in YAML text"
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - every other YAMLError is marked
        raise _error(name, 1, 1, "YAML error: " + " ".join(str(exc).split())) from None

    # LinuxKit reads the first document and ignores the rest; a trailing `---` or a document of
    # comments only is common and harmless, a second spec in the file is refused (it would
    # be ignored silently).
    extra = [node for node in nodes[1:] if not _is_empty(node)]
    if extra:
        second = extra[0].start_mark
        raise _error(
            name,
            second.line + 1,
            second.column + 1,
            "a spec file holds one YAML document; split multiple specs into files",
        )
    origin = Location(name, 1, 1)
    document = Document(data=None, origin=origin)
    if nodes:
        builder = _Builder(name, document)
        document.data = builder.build(nodes[0], ())
    return document


def _is_empty(node: Node) -> bool:
    """A document with nothing in it (or only `~`/`null`)."""
    return (
        isinstance(node, ScalarNode)
        and node.tag == PLAIN_TAG
        and resolve_plain(node.value)[1] is None
    )


def _error(file: str, line: int, column: int, message: str) -> SpecSyntaxError:
    return SpecSyntaxError(Diagnostic(Location(file, line, column), (), message))


class _Builder:
    """Turns a composed node graph into Python data, recording locations."""

    def __init__(self, file: str, document: Document) -> None:
        self._file = file
        self._document = document
        self._constructor = SafeConstructor()
        self._active: set[int] = set()  # node ids on the current path, to catch recursive aliases
        self._count = 0

    def _location(self, node: Node) -> Location:
        mark = node.start_mark
        return Location(self._file, mark.line + 1, mark.column + 1)

    def build(self, node: Node, path: DataPath) -> Any:
        self._count += 1
        if self._count > MAX_NODES:
            loc = self._location(node)
            raise _error(
                self._file,
                loc.line,
                loc.column,
                f"document expands to more than {MAX_NODES} nodes (alias bomb?)",
            )
        self._document.values.setdefault(path, self._location(node))
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self._active:
            loc = self._location(node)
            raise _error(self._file, loc.line, loc.column, "recursive YAML alias")
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
        finally:
            self._active.discard(id(node))
        loc = self._location(node)  # pragma: no cover - the composer makes no other nodes
        raise _error(self._file, loc.line, loc.column, "unsupported YAML node")

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            if node.tag == PLAIN_TAG:
                return resolve_plain(node.value)[1]
            if node.tag in RESOLVABLE_TAGS:
                return resolve_tagged(node.tag, node.value)
            return self._constructor.construct_object(node, deep=True)
        except ConstructorError as exc:
            loc = self._location(node)
            raise _error(self._file, loc.line, loc.column, f"YAML error: {exc.problem}") from None
        except ValueError as exc:  # e.g. `!!bool yes`: not a boolean by YAML 1.2
            loc = self._location(node)
            raise _error(self._file, loc.line, loc.column, f"invalid value: {exc}") from None

    def _mapping(self, node: MappingNode, path: DataPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Location] = {}
        for key_node, value_node in self._entries(node):
            key_loc = self._location(key_node)
            if not isinstance(key_node, ScalarNode):
                raise _error(
                    self._file, key_loc.line, key_loc.column, "mapping keys must be strings"
                )
            key = self._scalar(key_node)
            if not isinstance(key, str):
                raise _error(
                    self._file,
                    key_loc.line,
                    key_loc.column,
                    f"mapping keys must be strings, got {describe(key)} {key_node.value!r}",
                )
            if key in first_seen:
                first = first_seen[key]
                raise _error(
                    self._file,
                    key_loc.line,
                    key_loc.column,
                    f"duplicate key {key!r} (first at line {first.line})",
                )
            first_seen[key] = key_loc
            self._document.keys[(*path, key)] = key_loc
            result[key] = self.build(value_node, (*path, key))
        return result

    def _entries(self, node: MappingNode) -> Iterator[tuple[Node, Node]]:
        """The mapping's own entries, then those brought in by `<<` merge keys."""
        own: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag != MERGE_TAG:
                if isinstance(key_node, ScalarNode):
                    own.add(key_node.value)
                yield key_node, value_node
        for key_node, value_node in node.value:
            if key_node.tag != MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    loc = self._location(source)
                    raise _error(self._file, loc.line, loc.column, "'<<' merges only mappings")
                if id(source) in self._active:
                    loc = self._location(source)
                    raise _error(self._file, loc.line, loc.column, "recursive YAML alias")
                self._active.add(id(source))
                try:
                    for k, v in self._entries(source):
                        if isinstance(k, ScalarNode) and k.value not in own:
                            own.add(k.value)
                            yield k, v
                finally:
                    self._active.discard(id(source))


#: How each type of YAML value reads to a user; bool before int, which it is a kind of.
_VALUE_KINDS: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
    (bytes, "binary data"),
)


def describe(value: Any) -> str:
    """How a YAML value reads to a user: 'a string', 'an integer', ..."""
    for kind, words in _VALUE_KINDS:
        if isinstance(value, kind):
            return words
    return type(value).__name__
