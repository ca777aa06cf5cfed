"""Value objects without dataclasses: importing dataclasses (with inspect and ast) and
typing costs PID 1 about a second under emulation (TCG), before any work is done.

A subclass lists its fields in __slots__ and sets them in __init__; Record compares,
hashes and prints them, a base's fields first.
"""

from __future__ import annotations


class Record:
    __slots__: tuple[str, ...] = ()
    _field_names: tuple[str, ...] = ()  # the slots of the class and of its bases

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._field_names = (*cls._field_names, *cls.__dict__.get("__slots__", ()))

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._field_names)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._field_names)
        return f"{type(self).__name__}({values})"
