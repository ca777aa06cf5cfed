"""Small ELF files for the tests: headers the dynamic loader reads, and nothing to run."""

from __future__ import annotations

import struct

EM_X86_64 = 62
EM_AARCH64 = 183
_ET_EXEC, _ET_DYN = 2, 3
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 10, 15, 29
_HEADER, _PROGRAM_HEADER = 64, 56


def elf_file(
    *,
    needed: tuple[str, ...] = (),
    interpreter: str | None = None,
    rpath: str | None = None,
    runpath: str | None = None,
    shared: bool = True,
    machine: int = EM_X86_64,
) -> bytes:
    """An ELF64 little-endian file with these dynamic facts, loaded at address 0 as one
    segment (so addresses are file offsets)."""
    strings = bytearray(b"\0")

    def string(value: str) -> int:
        offset = len(strings)
        strings.extend(value.encode() + b"\0")
        return offset

    tags = [(_DT_NEEDED, string(name)) for name in needed]
    if rpath is not None:
        tags.append((_DT_RPATH, string(rpath)))
    if runpath is not None:
        tags.append((_DT_RUNPATH, string(runpath)))
    headers = 1 + (interpreter is not None) + 1
    interp_offset = _HEADER + headers * _PROGRAM_HEADER
    interp = interpreter.encode() + b"\0" if interpreter is not None else b""
    strtab_offset = interp_offset + len(interp)
    dynamic_offset = strtab_offset + len(strings)
    dynamic_offset += -dynamic_offset % 8
    tags += [(_DT_STRTAB, strtab_offset), (_DT_STRSZ, len(strings)), (_DT_NULL, 0)]
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in tags)
    size = dynamic_offset + len(dynamic)

    def program_header(kind: int, offset: int, length: int) -> bytes:
        return struct.pack("<IIQQQQQQ", kind, 4, offset, offset, offset, length, length, 8)

    program_headers = program_header(_PT_LOAD, 0, size)
    if interpreter is not None:
        program_headers += program_header(_PT_INTERP, interp_offset, len(interp))
    program_headers += program_header(_PT_DYNAMIC, dynamic_offset, len(dynamic))
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        _ET_DYN if shared else _ET_EXEC,
        machine,
        1,
        0,
        _HEADER,
        0,
        0,
        _HEADER,
        _PROGRAM_HEADER,
        headers,
        64,
        0,
        0,
    )
    body = header + program_headers + interp + bytes(strings)
    return body + bytes(dynamic_offset - len(body)) + dynamic
