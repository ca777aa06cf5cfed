"""`osbuilder build`: the repository's packages assembled into real outputs."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from osbuilder.oci.progress import human_size
from osbuilder.oci.store import ContentStore
from osbuilder.pkg.recipe import load_recipe
from osbuilder.pkg.tag import package_reference
from tests.conftest import RECIPES, REPO, TRUST_OPTIONS, Packages, with_tags
from tests.integration.helpers import osbuilder, store_image, terminated_when
from tests.tarfiles import extract_all

pytestmark = pytest.mark.integration

REDIS = REPO / "examples/redis.yml"


def build(
    packages: Packages,
    tmp_path: Path,
    *args: str,
    out: str = "out",
    env: dict[str, str] | None = None,
    max_file_size: int | None = None,
) -> subprocess.CompletedProcess[str]:
    return osbuilder(
        "build",
        *TRUST_OPTIONS,
        "--offline",
        "--cache",
        str(packages.store.root),
        "-o",
        str(tmp_path / out),
        *args,
        env=env,
        max_file_size=max_file_size,
    )


def unpack_initrd(initrd: Path, into: Path) -> list[str]:
    into.mkdir()
    decompressed = subprocess.run(
        ["zstd", "-dc", str(initrd)], capture_output=True, check=True
    ).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], cwd=into, input=decompressed, check=True)
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"], input=decompressed, capture_output=True, check=True
    ).stdout.decode()
    return listing.splitlines()


def test_redis_example_builds_kernel_initrd_reproducibly(
    packages: Packages, tmp_path: Path
) -> None:
    first = build(packages, tmp_path, "--json", str(REDIS))
    assert first.returncode == 0, first.stderr
    outputs = json.loads(first.stdout)
    names = sorted(Path(o["path"]).name for o in outputs)
    assert names == ["redis-cmdline", "redis-initrd.img", "redis-kernel"]
    second = build(packages, tmp_path, "--json", str(REDIS), out="again")
    assert [o["sha256"] for o in json.loads(second.stdout)] == [o["sha256"] for o in outputs]
    out = tmp_path / "out"
    for output in outputs:  # the digests are those of the files written
        assert output["sha256"] == hashlib.sha256(Path(output["path"]).read_bytes()).hexdigest()
    assert (
        out / "redis-cmdline"
    ).read_text() == "console=tty0 console=ttyS0 console=ttyAMA0 rootfstype=ramfs"
    assert (out / "redis-kernel").read_bytes()[0x202:0x206] == b"HdrS"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no spool or temp left

    names = unpack_initrd(out / "redis-initrd.img", tmp_path / "root")
    root = tmp_path / "root"
    assert "init" in names and "boot/kernel" not in names
    assert (root / "init").stat().st_mode & 0o111
    assert (root / "usr/bin/crun").exists()
    assert any(n.startswith("lib/modules/") and n.endswith("modules.dep") for n in names)
    assert (root / "etc/resolv.conf").is_symlink()
    assert os.readlink(root / "etc/resolv.conf") == "/run/resolvconf/resolv.conf"
    redis = root / "containers/services/redis"
    assert (redis / "lower/usr/bin/redis-server").exists()
    assert (redis / "rootfs").is_dir() and (redis / "tmp").is_dir()
    config = json.loads((redis / "config.json").read_text())
    assert sorted(config["process"]["capabilities"]["effective"]) == sorted(
        [
            "CAP_NET_BIND_SERVICE",
            "CAP_CHOWN",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_DAC_OVERRIDE",
        ]
    )
    assert config["process"]["args"] == ["/usr/bin/redis-server", "/etc/redis/osbuilder.conf"]
    assert "network" not in [ns["type"] for ns in config["linux"]["namespaces"]]  # net: host
    runtime = json.loads((redis / "runtime.json").read_text())
    overlay = [m for m in runtime["mounts"] if m.get("type") == "overlay"]
    assert overlay[0]["options"][0] == "lowerdir=/containers/services/redis/lower"
    dhcpcd = root / "containers/onboot/000-dhcpcd"
    assert json.loads((dhcpcd / "config.json").read_text())["process"]["args"] == [
        "/sbin/dhcpcd",
        "--nobackground",
        "-f",
        "/dhcpcd.conf",
        "-1",
    ]


def test_a_spec_on_standard_input_builds_as_system(packages: Packages, tmp_path: Path) -> None:
    from_stdin = osbuilder(
        "build",
        *TRUST_OPTIONS,
        "--offline",
        "--cache",
        str(packages.store.root),
        "-o",
        str(tmp_path / "out"),
        "--json",
        "-",
        input=with_tags(REDIS),
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    from_file = build(packages, tmp_path, "--json", str(REDIS), out="file")
    names = [Path(o["path"]).name for o in json.loads(from_stdin.stdout)]
    assert names == ["system-kernel", "system-initrd.img", "system-cmdline"]
    digests = [o["sha256"] for o in json.loads(from_stdin.stdout)]
    assert digests == [o["sha256"] for o in json.loads(from_file.stdout)]


def test_tar_format_annotates_every_entry(packages: Packages, tmp_path: Path) -> None:
    result = build(packages, tmp_path, "-f", "tar", "--name", "sys", str(REDIS))
    assert result.returncode == 0, result.stderr
    archive = tmp_path / "out/sys.tar"
    assert result.stdout == f"{archive} ({human_size(archive.stat().st_size)})\n"
    listing = subprocess.run(
        ["bsdtar", "-tf", str(archive)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "containers/services/redis/config.json" in listing
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert all(
        "OSBUILDER.source" in m.pax_headers and "OSBUILDER.location" in m.pax_headers
        for m in members
    )
    locations = {m.pax_headers["OSBUILDER.location"] for m in members}
    assert {"kernel", "init[0]", "init[1]", "onboot[0]", "services[0]", "services[1]"} <= locations
    again = build(packages, tmp_path, "-f", "tar", "--name", "sys", str(REDIS), out="again")
    assert again.returncode == 0
    assert (tmp_path / "again/sys.tar").read_bytes() == archive.read_bytes()


def test_source_date_epoch_changes_generated_times(packages: Packages, tmp_path: Path) -> None:
    build(packages, tmp_path, "-f", "tar", str(REDIS), env={"SOURCE_DATE_EPOCH": "1600000000"})
    with tarfile.open(tmp_path / "out/redis.tar") as tar:
        config = tar.getmember("containers/services/redis/config.json")
    assert config.mtime == 1600000000


def spec(tmp_path: Path, packages: Packages, text: str) -> Path:
    path = tmp_path / "spec.yml"
    short = {name.split("/")[-1]: ref for name, ref in packages.references.items()}
    path.write_text(text.format(**short))
    return path


def extract_configs(tmp_path: Path, packages: Packages, path: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    result = build(packages, tmp_path, "-f", "tar", "--name", "t", str(path))
    assert result.returncode == 0, result.stderr
    configs = {}
    with tarfile.open(tmp_path / "out/t.tar") as tar:
        for member in tar.getmembers():
            if member.name.endswith("/config.json"):
                data = tar.extractfile(member)
                assert data is not None
                configs[member.name.split("/")[2]] = json.loads(data.read())
    return configs


def test_label_binds_kept_with_binds_add_and_caps_override(
    packages: Packages, tmp_path: Path
) -> None:
    path = spec(
        tmp_path,
        packages,
        """
init: [{init}, {crun}]
services:
  - name: getty
    image: {getty}
    binds.add: [/var/tmp:/var/tmp]
  - name: dhcpcd
    image: {dhcpcd}
    capabilities: [CAP_NET_ADMIN]
    uid: getty
""",
    )
    configs = extract_configs(tmp_path, packages, path)
    getty_binds = {m["destination"] for m in configs["getty"]["mounts"] if m["type"] == "bind"}
    assert {"/hostroot", "/dev", "/run", "/var/tmp"} <= getty_binds  # label binds + binds.add
    dhcpcd = configs["dhcpcd"]["process"]
    assert dhcpcd["capabilities"]["effective"] == [
        "CAP_NET_ADMIN"
    ]  # the spec's replace the label's
    assert dhcpcd["user"]["uid"] >= 100  # getty's allocated id


def test_files_and_volumes_are_built_into_the_tree(packages: Packages, tmp_path: Path) -> None:
    """Each kind of `files` entry (contents, source, directory, symlink, the spec as built
    in YAML and JSON, optional sources), default modes, ids by name, and the volumes: empty,
    an image's files, an image as an OCI layout."""
    host = tmp_path / "host.txt"
    host.write_text("from the host\n")
    path = spec(
        tmp_path,
        packages,
        f"""
init: [{{init}}]
onboot:
  - name: writer
    image: {{getty}}
    uid: writer
    gid: writer
    binds: [vola:/vola, volb:/volb:ro]
volumes:
  - name: vola
  - name: volb
    image: {{getty}}
    readonly: true
  - name: volc
    image: {{getty}}
    format: oci
files:
  - path: etc/motd
    contents: "welcome é\\n"
    mode: "0644"
  - path: etc/secret
    contents: "s"
  - path: etc/owned
    contents: "x"
    uid: writer
    gid: writer
  - path: var/lib/data
    directory: true
  - path: bin/sh-link
    symlink: /bin/busybox
  - path: etc/from-host
    source: {host}
  - path: etc/absent
    source: {tmp_path / "missing"}
    optional: true
  - path: etc/spec.yml
    metadata: yaml
  - path: etc/spec.json
    metadata: json
""",
    )
    result = build(packages, tmp_path, "-f", "tar", "--name", "t", str(path))
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "out/t.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}

        def read(name: str) -> bytes:
            data = tar.extractfile(members[name])
            assert data is not None
            return data.read()

        assert read("etc/motd") == "welcome é\n".encode()
        assert members["etc/motd"].mode == 0o644
        assert members["etc/secret"].mode == 0o600  # the default: only root reads it
        writer = json.loads(read("containers/onboot/000-writer/config.json"))["process"]["user"]
        assert (members["etc/owned"].uid, members["etc/owned"].gid) == (
            writer["uid"],
            writer["gid"],
        )
        assert writer["uid"] >= 100  # allocated, as LinuxKit allocates named ids
        assert members["var/lib/data"].isdir() and members["var/lib/data"].mode == 0o700
        assert members["bin/sh-link"].issym()
        assert members["bin/sh-link"].linkname == "/bin/busybox"
        assert read("etc/from-host") == b"from the host\n"
        assert "etc/absent" not in members
        as_built = yaml.safe_load(read("etc/spec.yml"))
        assert as_built == json.loads(read("etc/spec.json"))
        digest = packages.store.lookup(packages.references["osbuilder/getty"])
        assert digest is not None
        pinned = f"{packages.references['osbuilder/getty']}@{digest.digest}"
        assert as_built["onboot"][0]["image"].endswith(pinned.split("/", 1)[-1])
        assert read("etc/spec.json").endswith(b"\n}\n")

        volumes = "containers/volumes"
        assert members[f"{volumes}/vola/lower"].isdir()
        assert not [n for n in members if n.startswith(f"{volumes}/vola/lower/")]
        assert members[f"{volumes}/volb/lower/usr/bin"].isdir()  # the image's own files
        index = json.loads(read(f"{volumes}/volc/lower/index.json"))
        [manifest] = index["manifests"]
        blob = f"{volumes}/volc/lower/blobs/sha256/{manifest['digest'][7:]}"
        assert hashlib.sha256(read(blob)).hexdigest() == manifest["digest"][7:]


def test_read_write_bind_of_a_read_only_volume_fails(packages: Packages, tmp_path: Path) -> None:
    path = spec(
        tmp_path,
        packages,
        """
init: [{init}]
volumes:
  - name: vola
    readonly: true
onboot:
  - name: writer
    image: {getty}
    binds: [vola:/vola]
""",
    )
    result = build(packages, tmp_path, str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"osbuilder: {path}:9:13: onboot[0].binds[0]: "
        "volume 'vola' is read-only: bind it with the 'ro' option"
    )
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_image_offline_is_a_clean_error(packages: Packages, tmp_path: Path) -> None:
    path = spec(tmp_path, packages, "init:\n  - {init}\n  - osbuilder/nothing:1\n")
    result = build(packages, tmp_path, str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"osbuilder: {path}:3:5: init[1]: osbuilder/nothing:1 is not in the content store; "
        "pull it first (without --offline)"
    )
    assert list((tmp_path / "out").iterdir()) == []


def test_a_bad_image_label_is_reported_at_the_line_naming_the_image(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "store")
    labels = {"org.mobyproject.config": '{"capabilities": "CAP_CHOWN", "pid": 1}'}
    store_image(store, "test/bad-label:1", {"etc/": b""}, labels)
    path = tmp_path / "spec.yml"
    path.write_text("services:\n  - name: bad\n    image: test/bad-label:1\n")
    result = osbuilder(
        "build",
        "--offline",
        "--cache",
        str(store.root),
        "-f",
        "tar",
        "-o",
        str(tmp_path / "out"),
        str(path),
    )
    assert result.returncode == 1
    # Each of the label's problems on a line of its own, at the line naming the image.
    where = f"{path}:3:12: services[0].image: image docker.io/test/bad-label:1: label "
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"osbuilder: {where}org.mobyproject.config: capabilities: ")
    assert (
        lines[1]
        == f"osbuilder: {where}org.mobyproject.config: pid: expected a string, got an integer 1"
    )
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "files:\n  - path: etc/motd\n    source: {missing}\n",
            "{spec}:6:13: files[0].source: {missing} does not exist "
            "(mark it optional: true to skip it when missing)",
        ),
        (
            "files:\n  - path: etc/motd\n    source: {directory}\n",
            "{spec}:6:13: files[0].source: {directory} is not a regular file "
            "(a source is one file's contents)",
        ),
        (
            "  ucode: intel-ucode.cpio\n",
            "{spec}:4:10: kernel.ucode: kernel image {kernel} has no ucode file 'intel-ucode.cpio'",
        ),
        (
            "  binary: vmlinuz\n",
            "{spec}:4:11: kernel.binary: kernel image {kernel} has no file 'vmlinuz'",
        ),
        (
            "  tar: modules.tar\n",
            "{spec}:4:8: kernel.tar: kernel image {kernel} has no 'modules.tar' (set tar: none?)",
        ),
        (
            "  binary: System.map\n",
            "{spec}:4:11: kernel.binary: kernel image {kernel}'s System.map is neither a bzImage "
            "nor a gzip'd kernel: cannot decompress it (build without --decompress-kernel)",
        ),
    ],
    ids=[
        "files-source",
        "files-source-directory",
        "kernel-ucode",
        "kernel-binary",
        "kernel-tar",
        "kernel-decompress",
    ],
)
def test_a_value_that_cannot_be_built_is_reported_at_its_line(
    packages: Packages, tmp_path: Path, text: str, expected: str
) -> None:
    """Validation cannot know these (they need the images or the host); the build says
    where in the spec the value is, as validation does for its own errors."""
    kernel = packages.references["osbuilder/kernel"]
    missing = tmp_path / "no-such-file"
    path = tmp_path / "spec.yml"
    values = {"missing": missing, "directory": tmp_path}
    path.write_text(f"kernel:\n  image: {kernel}\n  cmdline: x\n" + text.format(**values))
    options = ["--decompress-kernel"] if "decompress" in expected else []
    result = build(packages, tmp_path, *options, str(path))
    assert result.returncode == 1
    message = expected.format(spec=path, kernel=kernel, **values)
    assert result.stderr.strip() == f"osbuilder: {message}"
    assert list((tmp_path / "out").iterdir()) == []  # no output, spool or temp file left


def test_a_failed_write_leaves_the_previous_outputs_as_they_were(
    packages: Packages, tmp_path: Path
) -> None:
    """Outputs appear together or not at all: a build that cannot write its initrd (here
    a file size limit, as a full disk would) must not leave its new kernel and cmdline
    next to the previous initrd."""
    out = tmp_path / "out"
    assert build(packages, tmp_path, "--name", "r", str(REDIS)).returncode == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert sorted(before) == ["r-cmdline", "r-initrd.img", "r-kernel"]
    changed = tmp_path / "changed.yml"
    changed.write_text(with_tags(REDIS).replace("console=tty0 ", "quiet console=tty0 "))
    limit = (out / "r-kernel").stat().st_size + 1024 * 1024  # room for the kernel, not the initrd
    result = build(packages, tmp_path, "--name", "r", str(changed), max_file_size=limit)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"osbuilder: kernel+initrd: {out}/r-initrd.img: cannot write: File too large"
    )
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_terminated_build_leaves_no_partial_file(packages: Packages, tmp_path: Path) -> None:
    """SIGTERM (kill, timeout, a CI runner) is handled as Ctrl-C: the temporaries go."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "r-kernel").write_bytes(b"an earlier build")
    status, stderr = terminated_when(
        # Stopped while it compresses the initrd: its partial file is there.
        lambda: bool(list(out.glob(".r-initrd.img.*.partial"))),
        *("build", *TRUST_OPTIONS, "--offline", "--cache", str(packages.store.root)),
        *("-o", str(out)),
        *("--name", "r", str(REDIS)),
    )
    assert (status, stderr) == (128 + signal.SIGTERM, "osbuilder: terminated\n")
    assert os.listdir(out) == ["r-kernel"]
    assert (out / "r-kernel").read_bytes() == b"an earlier build"


def test_builds_into_one_directory_commit_one_after_the_other(
    packages: Packages, tmp_path: Path
) -> None:
    """A build's files appear together under the directory's lock: one held elsewhere (as
    a concurrent build holds it while it renames) keeps them back, whole, until released."""
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "osbuilder", "build", *TRUST_OPTIONS, "--offline", "--cache"]
    command += [str(packages.store.root), "-o", str(out), "--name", "r", str(REDIS)]
    directory = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(directory, fcntl.LOCK_EX)
    build = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            while not list(out.glob(".r-cmdline.*.partial")):  # written last
                assert build.poll() is None, build.communicate()
                time.sleep(0.01)
            time.sleep(0.5)
            assert build.poll() is None  # waiting for the directory
            assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == []
        finally:
            os.close(directory)  # releases the lock
        assert build.wait(timeout=60) == 0
    finally:
        build.kill()
    assert sorted(p.name for p in out.iterdir()) == ["r-cmdline", "r-initrd.img", "r-kernel"]


def test_what_a_killed_build_left_is_removed_by_the_next(
    packages: Packages, tmp_path: Path
) -> None:
    """kill -9 (or a power cut) runs no cleanup: the spool and partial outputs stay. The
    next build into the directory removes them once they are clearly no one's."""
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "osbuilder", "build", *TRUST_OPTIONS, "--offline", "--cache"]
    command += [str(packages.store.root), "-o", str(out), "--name", "r", str(REDIS)]
    killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not list(out.glob(".r-initrd.img.*.partial")):
            assert killed.poll() is None, "the build ended before it could be killed"
            time.sleep(0.002)
    finally:
        killed.kill()
        killed.wait()
    left = sorted(p.name for p in out.iterdir())
    assert any(name.startswith(".osbuilder-spool-") for name in left), left
    an_hour_ago = time.time() - 3600
    for path in out.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert build(packages, tmp_path, "--name", "r", str(REDIS)).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["r-cmdline", "r-initrd.img", "r-kernel"]


def test_no_kernel_is_a_clean_error_for_kernel_initrd(packages: Packages, tmp_path: Path) -> None:
    path = spec(tmp_path, packages, "init: [{init}]\n")
    result = build(packages, tmp_path, str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("osbuilder: kernel+initrd: the spec has no kernel; ")
    assert list((tmp_path / "out").iterdir()) == []


def store_copy(packages: Packages, root: Path) -> Path:
    """A store with the packages' blobs and names (hard links) and no snapshots yet."""
    blobs = root / "blobs/sha256"
    blobs.mkdir(parents=True)
    for blob in packages.store.blobs.iterdir():
        os.link(blob, blobs / blob.name)
    (root / "index.json").write_bytes((packages.store.root / "index.json").read_bytes())
    return root


def build_json(store: Path, out: Path, *specs: Path) -> dict[str, str]:
    result = osbuilder(
        *("build", *TRUST_OPTIONS, "--offline", "--cache", str(store), "-o", str(out)),
        *("--json", *map(str, specs)),
    )
    assert result.returncode == 0, result.stderr
    return {Path(o["path"]).name: o["sha256"] for o in json.loads(result.stdout)}


def test_layers_are_unpacked_once_into_the_store_and_gc_takes_them_away(
    packages: Packages, tmp_path: Path
) -> None:
    store = store_copy(packages, tmp_path / "store")
    first = build_json(store, tmp_path / "one", REDIS)
    snapshots = store / "snapshots"
    made = {p.name: p.stat().st_mtime_ns for p in snapshots.iterdir()}
    tars = [name for name in made if name.endswith(".tar")]
    # One per layer of the spec's six images (each has a layer or more), with its index.
    assert len(tars) >= 6 and all(name[:-4] + ".index" in made for name in tars)
    assert all((store / "blobs/sha256" / name.split(".")[0]).is_file() for name in made)
    # The kernel image's kernel.tar has an index of its own: HEX.OFFSET.index.
    assert any(name.count(".") == 2 for name in made)

    assert build_json(store, tmp_path / "two", REDIS) == first  # from the snapshots
    assert {p.name: p.stat().st_mtime_ns for p in snapshots.iterdir()} == made
    assert first == build_json(packages.store.root, tmp_path / "three", REDIS)

    gc = osbuilder("cache", "gc", "--snapshots", "--cache", str(store))
    assert gc.returncode == 0, gc.stderr
    assert list(snapshots.iterdir()) == []
    assert build_json(store, tmp_path / "four", REDIS) == first  # unpacked again
    assert sorted(p.name for p in snapshots.iterdir()) == sorted(made)

    for name in json.loads(osbuilder("cache", "ls", "--json", "--cache", str(store)).stdout):
        osbuilder("cache", "rm", "--cache", str(store), name["name"])
    gc = osbuilder("cache", "gc", "--cache", str(store))
    assert gc.returncode == 0, gc.stderr
    assert list(snapshots.iterdir()) == []


def test_a_store_that_cannot_keep_snapshots_still_builds(
    packages: Packages, tmp_path: Path
) -> None:
    store = store_copy(packages, tmp_path / "store")
    (store / "snapshots").write_text("in the way\n")  # as a read-only store would be
    result = osbuilder(
        *("build", *TRUST_OPTIONS, "--offline", "--cache", str(store)),
        *("-o", str(tmp_path / "out"), str(REDIS)),
    )
    assert result.returncode == 0, result.stderr
    assert "cannot keep unpacked layers there" in result.stderr
    assert (store / "snapshots").read_text() == "in the way\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "redis-cmdline",
        "redis-initrd.img",
        "redis-kernel",
    ]


def test_a_spec_naming_its_packages_by_template_builds_the_same_system(
    packages: Packages, tmp_path: Path
) -> None:
    """examples/redis.yml, which names each image `@pkg:PATH`, builds bit-identical outputs
    from a directory elsewhere (paths relative to it) and with the tags written out."""
    tags = with_tags(REPO / "examples/redis.yml")
    assert '"@pkg:' not in tags and tags.count("osbuilder/") == 6  # kernel, 2 init, 3 more
    text = tags
    templated_dir = tmp_path / "elsewhere/specs"
    templated_dir.mkdir(parents=True)
    for directory in RECIPES:
        reference = package_reference(load_recipe(directory))
        relative = os.path.relpath(directory, templated_dir)
        text = text.replace(reference, f'"@pkg:{relative}"')
    assert text.count('"@pkg:') == 6, text
    templated = templated_dir / "redis.yml"
    templated.write_text(text)
    tagged = tmp_path / "tagged/redis.yml"
    tagged.parent.mkdir()
    tagged.write_text(tags)
    expected = build_json(packages.store.root, tmp_path / "tags", tagged)
    assert build_json(packages.store.root, tmp_path / "templates", templated) == expected
    assert build_json(packages.store.root, tmp_path / "example", REDIS) == expected


def test_the_system_carries_an_sbom_of_its_images_and_their_packages(
    packages: Packages, tmp_path: Path
) -> None:
    """sbom.spdx.json in the root (valid SPDX, as the SPDX project's validator reads it):
    each image of examples/redis.yml with the Debian packages its database lists; the
    root's dpkg database holds the packages of both init images, as dpkg-query reads it.
    --sbom-output moves the document, --no-sbom leaves it out."""
    spec_file = str(REPO / "examples/redis.yml")
    result = build(packages, tmp_path, "-f", "tar", spec_file)
    assert result.returncode == 0, result.stderr
    extracted = tmp_path / "root"
    with tarfile.open(tmp_path / "out/redis.tar") as tar:
        extract_all(
            tar,
            extracted,
            [tar.getmember(name) for name in ("sbom.spdx.json", "var/lib/dpkg/status")],
        )
    assert validate_full_spdx_document(parse_file(str(extracted / "sbom.spdx.json"))) == []
    document = json.loads((extracted / "sbom.spdx.json").read_text())
    names = {p["SPDXID"]: p["name"] for p in document["packages"]}
    contains: dict[str, set[str]] = {}
    for relationship in document["relationships"]:
        if relationship["relationshipType"] == "CONTAINS":
            element = names[relationship["spdxElementId"]]
            contains.setdefault(element, set()).add(names[relationship["relatedSpdxElement"]])
    assert "redis-server" in contains["docker.io/osbuilder/redis"]
    assert "crun" in contains["docker.io/osbuilder/crun"]
    assert "busybox-static" in contains["docker.io/osbuilder/init"]
    assert set(contains["system"]) == {
        f"docker.io/osbuilder/{name}"
        for name in ("kernel", "init", "crun", "dhcpcd", "getty", "redis")
    }
    (extracted / "var/lib/dpkg/available").touch()
    installed = subprocess.run(
        ["dpkg-query", f"--admindir={extracted / 'var/lib/dpkg'}", "-W", "-f=${Package}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"busybox-static", "python3.11-minimal", "crun"} <= set(installed)

    moved = build(
        packages, tmp_path, "-f", "tar", "--sbom-output", "/etc/sbom.json", spec_file, out="moved"
    )
    none = build(packages, tmp_path, "-f", "tar", "--no-sbom", spec_file, out="none")
    assert moved.returncode == none.returncode == 0, moved.stderr + none.stderr
    with tarfile.open(tmp_path / "moved/redis.tar") as tar:
        assert "etc/sbom.json" in tar.getnames() and "sbom.spdx.json" not in tar.getnames()
    with tarfile.open(tmp_path / "none/redis.tar") as tar:
        assert not [n for n in tar.getnames() if "sbom" in n]
