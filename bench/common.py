"""What every benchmark needs before it times osbuilder."""

from __future__ import annotations

import compileall
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def byte_compile() -> None:
    """Compile osbuilder's modules to bytecode, as an installed osbuilder has them.

    pip compiles a package when it installs it, and a checkout gets its bytecode on the
    first run; but where PYTHONDONTWRITEBYTECODE is set (CI images often set it) an
    editable checkout would compile every module on every run, which times the compiler,
    not osbuilder.
    """
    compileall.compile_dir(REPO / "osbuilder", quiet=1)
