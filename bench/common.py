"""What every benchmark needs before it times osbuilder."""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
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


OSBUILDER = [sys.executable, "-m", "osbuilder"]
DEFAULT_STORE = REPO / ".cache/test-store"  # where the tests build the packages too


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_STORE,
        help=f"content store (default {DEFAULT_STORE.relative_to(REPO)}; the packages are "
        "built into it when missing)",
    )


def build_packages(store: Path) -> int:
    """`osbuilder pkg build` of every package and kernel recipe into `store`, each signed
    as the tests sign them (examples/redis.yml requires it: build with
    `trust_options(store)`); its exit code."""
    from tests.conftest import package_signer

    recipes = sorted(
        str(recipe.parent.relative_to(REPO))
        for pattern in ("pkg/*/build.yml", "kernels/*/build.yml")
        for recipe in REPO.glob(pattern)
    )
    key, _ = package_signer(store)
    built = subprocess.run(
        [*OSBUILDER, "pkg", "build", "--cache", str(store), "--sign-key", str(key), *recipes],
        cwd=REPO,
        check=False,
        env={**os.environ, "OSBUILDER_KEY_PASSWORD": ""},
    )
    return built.returncode
