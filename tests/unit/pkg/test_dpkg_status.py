"""The extract hook's dpkg database: every .deb's control file, installed, as dpkg-query
reads it; a file that is no package is one E: line for mmdebstrap's error report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.pkg.dpkg_status import ARCHIVES, STATUS, main


def deb(archives: Path, name: str, version: str, compression: str) -> None:
    """A real package, built by dpkg-deb with `compression` for its control.tar."""
    tree = archives.parent / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
        "Maintainer: Someone <someone@example.org>\nDescription: a package\n"
        " with a long description\n"
    )
    (tree / "usr/share").mkdir(parents=True)
    (tree / "usr/share/file").write_text(name)
    target = archives / f"{name}_{version}_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(tree), str(target)],
        check=True,
        capture_output=True,
    )


def test_every_downloaded_package_becomes_an_installed_one(tmp_path: Path) -> None:
    archives = tmp_path / ARCHIVES
    archives.mkdir(parents=True)
    (tmp_path / STATUS).parent.mkdir(parents=True)
    for name, compression in (("alpha", "xz"), ("beta", "gzip"), ("gamma", "zstd")):
        deb(archives, name, "1:2.0-1", compression)
    assert main(["dpkg_status", str(tmp_path)]) == 0
    listed = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={tmp_path / 'var/lib/dpkg'}",
            "-W",
            "-f=${Package} ${Version} ${db:Status-Abbrev}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [line.strip() for line in listed] == [
        "alpha 1:2.0-1 ii",
        "beta 1:2.0-1 ii",
        "gamma 1:2.0-1 ii",
    ]
    assert (
        b" with a long description\nStatus: install ok installed\n"
        in (tmp_path / STATUS).read_bytes()
    )


def test_a_file_that_is_no_package_fails_the_hook_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archives = tmp_path / ARCHIVES
    archives.mkdir(parents=True)
    (tmp_path / STATUS).parent.mkdir(parents=True)
    (archives / "broken.deb").write_bytes(b"not an archive")
    assert main(["dpkg_status", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "E: osbuilder could not write var/lib/dpkg/status: broken.deb is not an ar archive\n"
    )
    assert main(["dpkg_status"]) == 2


def test_it_runs_as_mmdebstrap_runs_it(tmp_path: Path) -> None:
    archives = tmp_path / ARCHIVES
    archives.mkdir(parents=True)
    (tmp_path / STATUS).parent.mkdir(parents=True)
    deb(archives, "alpha", "1.0", "xz")
    subprocess.run([sys.executable, "-m", "osbuilder.pkg.dpkg_status", str(tmp_path)], check=True)
    assert (tmp_path / STATUS).read_bytes().startswith(b"Package: alpha\n")
