"""`osbuilder pkg build`: real mmdebstrap, read back by skopeo and by osbuilder's store."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from osbuilder.oci.platform import TargetPlatform
from osbuilder.oci.pull import Puller
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore
from osbuilder.pkg.build import build_package
from osbuilder.pkg.recipe import load_recipe
from tests.conftest import RECIPES, REPO, Packages
from tests.integration.helpers import AMD64, ARM64, blob_files_are_valid, osbuilder
from tests.integration.images import skopeo
from tests.integration.registry import Registry
from tests.tarfiles import extract_all

pytestmark = pytest.mark.integration

TINY = REPO / "tests/data/pkg/tiny"


def recipe_copy(tmp_path: Path, build_yml: str | None = None) -> Path:
    directory = tmp_path / "tiny"
    shutil.copytree(TINY, directory)
    if build_yml is not None:
        (directory / "build.yml").write_text(build_yml)
    return directory


def test_tiny_recipe_builds_and_reads_back(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = osbuilder("pkg", "build", "--json", "--cache", str(store), str(TINY))
    assert result.returncode == 0, result.stderr
    [built] = json.loads(result.stdout)
    tag = osbuilder("pkg", "show-tag", str(TINY), check=True).stdout.strip()
    assert built["reference"] == f"docker.io/{tag}" and built["built"] is True

    config = json.loads(skopeo("inspect", "--config", f"oci:{store}:{built['reference']}").stdout)
    runtime = config["config"]
    assert runtime["Entrypoint"] == ["/usr/bin/hello"]
    assert runtime["Cmd"] == ["world"]
    assert runtime["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "GREETING=hello",
    ]
    assert runtime["WorkingDir"] == "/tmp"
    label = json.loads(runtime["Labels"]["org.mobyproject.config"])
    assert label == {
        "net": "host",
        "capabilities": ["CAP_NET_ADMIN"],
        "binds.add": ["/var/log:/var/log"],
    }
    assert config["created"] == "2024-01-01T00:00:00Z"

    # osbuilder's own store reads the same image, offline
    image = Puller(ContentStore(store), None, AMD64).pull(parse_reference(tag)).image
    assert image.config.config.labels is not None
    assert json.loads(image.config.config.labels["org.mobyproject.config"]) == label
    assert len(image.manifest.layers) == 2  # the Debian root, then the recipe's files
    blob_files_are_valid(ContentStore(store))

    again = osbuilder("pkg", "build", "--cache", str(store), str(TINY))
    assert "(up to date," in again.stdout


def test_layers_hold_the_files_with_their_modes(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    osbuilder("pkg", "build", "--cache", str(store.root), str(TINY), check=True)
    [ref] = store.references()
    manifest = store.manifest(ref.descriptor.digest)
    with tarfile.open(store.blob_path(manifest.layers[1].digest)) as files:
        entries = {m.name: m for m in files.getmembers()}
    assert sorted(entries) == [
        "bin",
        "bin/sh",
        "etc",
        "etc/motd",
        "usr",
        "usr/bin",
        "usr/bin/hello",
    ]
    assert entries["usr/bin/hello"].mode == 0o755
    assert entries["etc/motd"].mode == 0o644
    assert entries["bin/sh"].issym() and entries["bin/sh"].linkname == "busybox"
    assert all(m.mtime == 1704067200 and m.uid == 0 for m in entries.values())
    with tarfile.open(store.blob_path(manifest.layers[0].digest)) as root:
        names = root.getnames()
    assert "bin/busybox" in names
    assert not any(n.startswith(("./", "usr/share/doc", "dev/")) for n in names)


def test_two_builds_give_one_digest(tmp_path: Path) -> None:
    digests = set()
    for run in range(2):
        result = osbuilder(
            "pkg",
            "build",
            "--json",
            "--force",
            "--cache",
            str(tmp_path / f"store-{run}"),
            str(TINY),
        )
        assert result.returncode == 0, result.stderr
        digests.add(json.loads(result.stdout)[0]["digest"])
    assert len(digests) == 1


def test_source_date_epoch_is_honoured(tmp_path: Path) -> None:
    result = osbuilder(
        "pkg",
        "build",
        "--json",
        "--cache",
        str(tmp_path / "s"),
        str(TINY),
        env={"SOURCE_DATE_EPOCH": "1600000000"},
    )
    reference = json.loads(result.stdout)[0]["reference"]
    config = json.loads(skopeo("inspect", "--config", f"oci:{tmp_path / 's'}:{reference}").stdout)
    assert config["created"] == "2020-09-13T12:26:40Z"


def test_tag_follows_the_content(tmp_path: Path) -> None:
    directory = recipe_copy(tmp_path)
    first = osbuilder("pkg", "show-tag", str(directory), check=True).stdout
    assert first == osbuilder("pkg", "show-tag", str(TINY), check=True).stdout
    (directory / "hello.sh").write_text("#!/bin/sh\necho changed\n")
    second = osbuilder("pkg", "show-tag", str(directory), check=True).stdout
    assert first != second and second.startswith("osbuilder/tiny:")


def test_missing_package_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    text = (
        (TINY / "build.yml")
        .read_text()
        .replace("[busybox-static]", "[busybox-static, no-such-package-x]")
    )
    directory = recipe_copy(tmp_path, text)
    store = tmp_path / "store"
    result = osbuilder("pkg", "build", "--cache", str(store), str(directory))
    assert result.returncode == 3
    [line] = result.stderr.splitlines()
    assert line == (
        f"osbuilder: {directory}/build.yml: mmdebstrap failed: "
        "E: Unable to locate package no-such-package-x"
    )
    assert list((store / "blobs/sha256").iterdir()) == []
    assert [p for p in (store / "ingest").iterdir() if not p.name.endswith(".lock")] == []
    assert json.loads((store / "index.json").read_text())["manifests"] == []


def test_bad_suite_is_one_clear_error(tmp_path: Path) -> None:
    text = (TINY / "build.yml").read_text().replace("debian:\n", "debian:\n  suite: nosuch\n")
    directory = recipe_copy(tmp_path, text)
    result = osbuilder("pkg", "build", "--cache", str(tmp_path / "store"), str(directory))
    assert result.returncode == 3
    assert result.stderr.startswith(f"osbuilder: {directory}/build.yml: mmdebstrap failed")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("build_yml", "message"),
    [
        (
            "image: osbuilder/x\ndebian:\n  packages: [a]\n  packges: [b]\n",
            "build.yml:4:3: debian: unknown field 'packges' (did you mean 'packages'?)",
        ),
        (
            "image: osbuilder/x\nfiles:\n  - {path: /a, source: missing.txt}\n",
            "build.yml:3:24: files[0].source: 'missing.txt' does not exist",
        ),
        (
            "image: osbuilder/x:1.0\nfiles:\n  - {path: /a, contents: x}\n",
            "build.yml:1:8: image: name the image without a tag",
        ),
        (
            "image: osbuilder/x\n",
            "build.yml:1:1: give 'debian' (a root filesystem), 'kernel', or at least 'files'",
        ),
        (
            "image: osbuilder/x\nfiles:\n  - {path: relative, contents: x}\n",
            "build.yml:3:12: files[0].path: must be an absolute path, got 'relative'",
        ),
        (
            "image: osbuilder/x\nconfig:\n  net: hots\n  entrypoint: [/x]\nfiles:\n"
            "  - {path: /x, contents: x}\n",
            "build.yml:3:8: config.net: net must be",
        ),
        ("image: osbuilder/x\ndebian:\n  packages: [a\n", "build.yml:4:1: YAML syntax error"),
        (
            "image: osbuilder/x\ndebian:\n  packages: [a]\n  keep: []\n",
            "build.yml:4:9: debian.keep: must have at least 1 item, got 0",
        ),
        (
            "image: osbuilder/k\nkernel:\n  package: linux-image-${ARCH}\n  version: '1'\n"
            "  modules: [virtio*, amd46:ata_piix]\n",
            "build.yml:5:22: kernel.modules[1]: 'amd46' is not an architecture",
        ),
    ],
    ids=[
        "typo",
        "missing-file",
        "tagged-name",
        "empty",
        "relative-path",
        "bad-label",
        "yaml",
        "empty-keep",
        "module-arch",
    ],
)
def test_invalid_recipe_is_a_located_error(tmp_path: Path, build_yml: str, message: str) -> None:
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "build.yml").write_text(build_yml)
    store = tmp_path / "store"
    result = osbuilder("pkg", "build", "--cache", str(store), str(directory))
    assert result.returncode == 1
    assert result.stderr.startswith(f"osbuilder: {directory}/{message}"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (store / "blobs").exists() or list((store / "blobs/sha256").iterdir()) == []


def test_not_a_package_directory(tmp_path: Path) -> None:
    result = osbuilder("pkg", "build", "--cache", str(tmp_path / "s"), str(tmp_path))
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"osbuilder: {tmp_path}: no build.yml; a package "
        "directory needs one"
    )


def test_push_after_build(tmp_path: Path, registry: Registry) -> None:
    image = f"{registry.host}/osbuilder/tiny"
    result = osbuilder(
        "pkg",
        "build",
        "--push",
        "--json",
        "--image",
        image,
        "--cache",
        str(tmp_path / "store"),
        str(TINY),
    )
    assert result.returncode == 0, result.stderr
    [built] = json.loads(result.stdout)
    tag = built["reference"].rsplit(":", 1)[1]
    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{image}:{tag}").stdout
    )
    assert inspected["Digest"] == built["digest"]
    assert json.loads(inspected["Labels"]["org.mobyproject.config"])["net"] == "host"


def build_for(store: Path, architecture: str) -> dict[str, object]:
    result = osbuilder(
        "pkg", "build", "--json", "--arch", architecture, "--cache", str(store), str(TINY)
    )
    assert result.returncode == 0, result.stderr
    [built] = json.loads(result.stdout)
    assert isinstance(built, dict)
    return built


def busybox_machine(store: ContentStore, reference: str, target: TargetPlatform) -> int:
    """The ELF machine of /bin/busybox in the `target` image of `reference`."""
    image = Puller(store, None, target).pull(parse_reference(reference)).image
    assert image.config.architecture == target.architecture
    with (
        store.open_blob(image.manifest.layers[0].digest) as blob,
        tarfile.open(fileobj=blob, mode="r|*") as layer,
    ):
        for member in layer:
            if member.name.lstrip("./") in ("bin/busybox", "usr/bin/busybox") and member.isfile():
                executable = layer.extractfile(member)
                assert executable is not None
                header = executable.read(20)
                assert header[:4] == b"\x7fELF"
                return int.from_bytes(header[18:20], "little")
    raise AssertionError(f"no busybox in {reference} for {target}")


def test_a_second_architecture_makes_the_name_an_index_of_both(
    tmp_path: Path, registry: Registry
) -> None:
    store = tmp_path / "store"
    amd64 = build_for(store, "amd64")
    arm64 = build_for(store, "arm64")
    assert arm64["built"] is True  # not "up to date" with the amd64 image
    assert arm64["reference"] == amd64["reference"] and arm64["digest"] != amd64["digest"]
    for architecture in ("arm64", "amd64"):
        again = build_for(store, architecture)
        assert again["built"] is False and again["digest"] == arm64["digest"]

    # Built in the other order, in another store: the same index.
    other = tmp_path / "other"
    build_for(other, "arm64")
    assert build_for(other, "amd64")["digest"] == arm64["digest"]

    reference = str(arm64["reference"])
    index = json.loads(skopeo("inspect", "--raw", f"oci:{store}:{reference}").stdout)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    assert index["manifests"][0]["digest"] == amd64["digest"]  # the amd64 image, untouched
    # Each entry holds that machine's programs: EM_X86_64 (62), EM_AARCH64 (183).
    assert busybox_machine(ContentStore(store), reference, AMD64) == 62
    assert busybox_machine(ContentStore(store), reference, ARM64) == 183

    # A registry takes it as an index, and a client picks its architecture from it.
    remote = f"{registry.host}/osbuilder/tiny:multi"
    pushed = osbuilder("push", "--cache", str(store), reference, "--to", remote)
    assert pushed.returncode == 0, pushed.stderr
    for architecture in ("amd64", "arm64"):
        inspected = skopeo(
            "inspect", "--tls-verify=false", "--override-arch", architecture, f"docker://{remote}"
        )
        assert json.loads(inspected.stdout)["Architecture"] == architecture


def test_repository_packages_build(packages: Packages) -> None:
    """Every package of pkg/ and the kernel build (make packages does the same)."""
    # (tests/unit/pkg/test_pkg.py lists them by name)
    assert set(packages.references) == {load_recipe(d).recipe.image for d in RECIPES}
    store = packages.store
    init = Puller(store, None, AMD64).pull(parse_reference(packages["osbuilder/init"])).image
    # 19.3 MB before the init kept only the stdlib modules it imports (its recipe's `stdlib`)
    size = sum(layer.size for layer in init.manifest.layers)
    assert size <= 14 * 1000 * 1000, f"the init image, compressed: {size} bytes, not <= 14 MB"
    redis = Puller(store, None, AMD64).pull(parse_reference(packages["osbuilder/redis"])).image
    assert redis.config.config.labels is not None
    label = json.loads(redis.config.config.labels["org.mobyproject.config"])
    assert label["net"] == "host"
    assert sorted(label["capabilities"]) == sorted(
        [
            "CAP_NET_BIND_SERVICE",
            "CAP_CHOWN",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_DAC_OVERRIDE",
        ]
    )


def test_bytecode_gives_one_digest_whichever_process_builds_it(tmp_path: Path) -> None:
    """The .pyc files of a recipe with `bytecode` are the same bytes when the recipe is
    built by the command line and inside a busier process (the tests' own, a tool
    embedding osbuilder), so one tag never names two contents."""
    recipe = tmp_path / "py"
    recipe.mkdir()
    (recipe / "m.py").write_text('SEPARATORS = ["\\x1e", "\\x1f"]\nNAME = "m"\n')
    (recipe / "build.yml").write_text(
        'image: osbuilder/py-test\nbytecode: "3.11"\n'
        "files:\n  - {path: /usr/lib/python3/dist-packages/m.py, source: m.py, mode: '0644'}\n"
    )
    on_the_command_line = osbuilder(
        "pkg", "build", "--json", "--cache", str(tmp_path / "cli-store"), str(recipe)
    )
    assert on_the_command_line.returncode == 0, on_the_command_line.stderr
    for character in "\x1e\x1f":
        sys.intern(character)  # as some module of a busy process might
    in_process = build_package(ContentStore(tmp_path / "store"), load_recipe(recipe))
    assert in_process.descriptor.digest == json.loads(on_the_command_line.stdout)[0]["digest"]


def test_ca_certificates_give_the_system_a_bundle_openssl_reads(
    packages: Packages, tmp_path: Path
) -> None:
    """The ca-certificates package in `init`: the system's /etc/ssl/certs holds Debian's
    bundle and the hashed names OpenSSL looks certificates up by, and the image holds
    nothing but the certificates (its recipe's `keep`)."""
    spec = tmp_path / "ca.yml"
    spec.write_text(
        f"kernel:\n  image: {packages['osbuilder/kernel']}\n"
        f"init: [{packages['osbuilder/init']}, {packages['osbuilder/ca-certificates']}]\n"
    )
    result = osbuilder(
        "build",
        "--offline",
        "--cache",
        str(packages.store.root),
        "-f",
        "tar",
        "-o",
        str(tmp_path),
        str(spec),
    )
    assert result.returncode == 0, result.stderr
    root = tmp_path / "root"
    with tarfile.open(tmp_path / "ca.tar") as tar:
        extract_all(tar, root, trusted=True)
    store = packages.store
    image = Puller(store, None, AMD64).pull(parse_reference(packages["osbuilder/ca-certificates"]))
    [layer] = image.image.manifest.layers
    with tarfile.open(store.blob_path(layer.digest)) as tar:
        names = tar.getnames()
    assert all(
        name in ("etc", "etc/ssl", "usr", "usr/share")
        or name.startswith(("etc/ssl/certs/", "usr/share/ca-certificates/"))
        or name in ("etc/ssl/certs", "usr/share/ca-certificates")
        for name in names
    ), sorted(names)
    certs = root / "etc/ssl/certs"
    context = ssl.create_default_context(cafile=certs / "ca-certificates.crt")
    assert len(context.get_ca_certs()) > 100
    # A root certificate found through the hashed names alone (-CApath), its links resolved
    # inside the system's tree.
    verified = subprocess.run(
        ["openssl", "verify", "-CApath", str(certs), str(certs / "ISRG_Root_X1.pem")],
        check=False,
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip().endswith(": OK")


def test_programs_keep_only_the_libraries_they_load(tmp_path: Path) -> None:
    """A real Debian root: dash's closure stays; libzstd, which dash does not load, goes,
    with dpkg, which needed it; a library dash needs that `drop` takes fails the build."""
    text = (
        (TINY / "build.yml")
        .read_text()
        .replace("[busybox-static]", "[busybox-static, dash, libzstd1]\n  programs: [bin/dash]")
    )
    directory = recipe_copy(tmp_path, text)
    store = ContentStore(tmp_path / "store")
    osbuilder("pkg", "build", "--cache", str(store.root), str(directory), check=True)
    [ref] = store.references()
    manifest = store.manifest(ref.descriptor.digest)
    with tarfile.open(store.blob_path(manifest.layers[0].digest)) as root:
        names = set(root.getnames())
    assert "bin/dash" in names
    assert {n for n in names if n.endswith("/libc.so.6")}
    assert not {n for n in names if "libzstd" in n}
    assert "usr/bin/dpkg" not in names  # dash's dependency, which needed libzstd

    dropping = text.replace("drop: [", "drop: [lib/*/libc.so.6, ")
    failing = recipe_copy(tmp_path / "failing", dropping)
    result = osbuilder("pkg", "build", "--cache", str(tmp_path / "other"), str(failing))
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"osbuilder: {failing}/build.yml: bin/dash needs libc.so.6, which the recipe's "
        "'drop' removes"
    ]
