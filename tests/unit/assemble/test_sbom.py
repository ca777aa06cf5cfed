"""The init images' package databases are unioned, and sbom.spdx.json says what the system
is made of: valid SPDX 2.3 (as the SPDX project's own validator reads it), reproducible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from osbuilder.assemble.entry import Entry, Kind
from osbuilder.assemble.package_db import APK_INSTALLED, DPKG_STATUS, PackageDatabases
from osbuilder.assemble.sbom import ImageRecord, write_sbom
from osbuilder.assemble.tree import Spool, Tree

EPOCH = 1_700_000_000
INIT_STATUS = """\
Package: busybox-static
Status: install ok installed
Architecture: amd64
Version: 1:1.35.0-4+b3
Description: a multi-call binary
 with a continued line

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u7
"""
CRUN_STATUS = """\
Package: crun
Status: install ok installed
Architecture: amd64
Version: 1.8.1-1+deb12u1

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u9

Package: removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""
APK_DB = "C:Q1abc\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n"
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def tree_in(tmp_path: Path) -> Tree:
    directory = tmp_path / "spool"
    directory.mkdir(parents=True, exist_ok=True)
    return Tree(Spool(directory))


def put(tree: Tree, path: str, text: str) -> None:
    content = tree.spool.write_bytes(text.encode())
    tree.put(Entry(path, Kind.FILE, 0o644, mtime=EPOCH, content=content))


def read(tree: Tree, path: str) -> str:
    tree.spool.flush()
    entry = tree.get(path)
    assert entry is not None and entry.content is not None
    return entry.content.read_bytes().decode()


def test_the_init_images_package_databases_are_unioned(tmp_path: Path) -> None:
    tree = tree_in(tmp_path)
    databases = PackageDatabases()
    put(tree, DPKG_STATUS, INIT_STATUS)
    put(tree, APK_INSTALLED, APK_DB)
    assert set(databases.take(tree)) == {DPKG_STATUS, APK_INSTALLED}
    put(tree, DPKG_STATUS, CRUN_STATUS)  # the next image's overwrites the file...
    assert set(databases.take(tree)) == {DPKG_STATUS}
    assert databases.take(tree) == {}  # (an image without databases brings none)
    databases.write(tree, EPOCH, "osbuilder.init-packages")
    union = read(tree, DPKG_STATUS)  # ...and the union replaces it
    assert [line for line in union.splitlines() if line.startswith("Package:")] == [
        "Package: busybox-static",
        "Package: crun",
        "Package: libc6",
        "Package: removed",
    ]
    assert "Version: 2.36-9+deb12u9" in union and "deb12u7" not in union  # the last image's
    assert " with a continued line\n" in union and union.endswith("\n\n")
    assert read(tree, APK_INSTALLED) == APK_DB  # one image had it: left as it was


def sbom_of(tmp_path: Path, tree: Tree, records: list[ImageRecord]) -> dict[str, Any]:
    write_sbom(tree, records, EPOCH, "sbom.spdx.json")
    text = read(tree, "sbom.spdx.json")
    path = tmp_path / "sbom.spdx.json"
    path.write_text(text)
    assert validate_full_spdx_document(parse_file(str(path))) == []  # the SPDX validator's
    data: dict[str, Any] = json.loads(text)
    return data


def system(tmp_path: Path) -> tuple[Tree, list[ImageRecord]]:
    tree = tree_in(tmp_path)
    put(tree, "etc/os-release", OS_RELEASE)
    put(tree, DPKG_STATUS, INIT_STATUS)
    init = tree.get(DPKG_STATUS)
    assert init is not None and init.content is not None
    root = "containers/services/redis/lower"
    put(tree, f"{root}/{DPKG_STATUS}", CRUN_STATUS)
    put(tree, f"{root}/etc/os-release", OS_RELEASE)
    put(tree, "containers/services/alpine/lower/" + APK_INSTALLED, APK_DB)
    records = [
        ImageRecord("docker.io/osbuilder/kernel:abc", "sha256:" + "1" * 64),
        ImageRecord(
            "docker.io/osbuilder/init:def",
            "sha256:" + "2" * 64,
            databases={DPKG_STATUS: init.content},
        ),
        ImageRecord("registry.example:5000/team/redis:7", "sha256:" + "3" * 64, root),
        ImageRecord(
            "docker.io/library/alpine:3.19",
            "sha256:" + "4" * 64,
            "containers/services/alpine/lower",
        ),
        ImageRecord("registry.example:5000/team/redis:7", "sha256:" + "3" * 64, root),  # twice
    ]
    return tree, records


def test_the_sbom_lists_each_image_and_the_packages_it_holds(tmp_path: Path) -> None:
    tree, records = system(tmp_path)
    document = sbom_of(tmp_path, tree, records)
    assert document["spdxVersion"] == "SPDX-2.3"
    assert document["creationInfo"]["created"] == "2023-11-14T22:13:20Z"  # the epoch
    packages = {p["SPDXID"]: p for p in document["packages"]}
    purls = {
        p["SPDXID"]: p["externalRefs"][0]["referenceLocator"]
        for p in document["packages"]
        if p.get("externalRefs")
    }
    images = [p for p in document["packages"] if p.get("primaryPackagePurpose") == "CONTAINER"]
    assert [p["name"] for p in images] == [
        "docker.io/osbuilder/kernel",
        "docker.io/osbuilder/init",
        "registry.example:5000/team/redis",
        "docker.io/library/alpine",
    ]  # the one used twice once
    redis_id = "SPDXRef-Image-" + "3" * 32
    assert purls[redis_id] == (
        "pkg:oci/redis@sha256%3A"
        + "3" * 64
        + "?repository_url=registry.example%3A5000/team/redis&tag=7"
    )
    contains = {
        (r["spdxElementId"], r["relatedSpdxElement"])
        for r in document["relationships"]
        if r["relationshipType"] == "CONTAINS"
    }
    libc_new = "SPDXRef-deb-libc6-2.36-9-deb12u9-amd64"
    assert (redis_id, libc_new) in contains
    assert ("SPDXRef-Image-" + "2" * 32, "SPDXRef-deb-libc6-2.36-9-deb12u7-amd64") in contains
    assert purls["SPDXRef-deb-busybox-static-1-1.35.0-4-b3-amd64"] == (
        "pkg:deb/debian/busybox-static@1%3A1.35.0-4+b3?arch=amd64&distro=debian-12"
    )
    assert purls["SPDXRef-apk-musl-1.2.4-r2-x86-64"] == "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64"
    assert not [r for r in contains if r[0] == "SPDXRef-Image-" + "1" * 32]  # no database
    assert not [p for p in document["packages"] if p["name"] == "removed"]  # only its config
    assert packages["SPDXRef-System"]["primaryPackagePurpose"] == "OPERATING-SYSTEM"


def test_the_sbom_is_reproducible_and_its_namespace_follows_its_contents(
    tmp_path: Path,
) -> None:
    first = sbom_of(tmp_path / "a", *system(tmp_path / "a"))
    again = sbom_of(tmp_path / "b", *system(tmp_path / "b"))
    assert first == again
    tree, records = system(tmp_path / "c")
    records.pop()
    records.pop()
    other = sbom_of(tmp_path / "c", tree, records)
    assert other["documentNamespace"] != first["documentNamespace"]
    assert first["documentNamespace"].startswith("https://osbuilder.invalid/spdx/")
