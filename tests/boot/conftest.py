"""Booting built systems under QEMU (TCG) for the boot tests."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import Packages


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_system(packages: Packages, spec: Path, output: Path) -> Path:
    """`osbuilder build` of `spec` into `output`; returns the kernel+initrd prefix."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "osbuilder",
            "build",
            "--offline",
            "--cache",
            str(packages.store.root),
            "-o",
            str(output),
            str(spec),
        ],
        check=True,
        capture_output=True,
    )
    return output / spec.stem


def spec_text(packages: Packages, template: str) -> str:
    """A spec naming the repository's packages by short name: {init}, {getty} ..."""
    short = {name.split("/")[-1]: ref for name, ref in packages.references.items()}
    return template.format(**short)
