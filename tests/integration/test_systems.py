"""Built systems in a real registry: push registry, pull -o, sbom, and bad artifacts."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest

from osbuilder.oci import mediatypes
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.registry import RegistryOptions
from osbuilder.systems.artifact import SYSTEM_TYPE, TITLE, BuildRecord
from osbuilder.systems.push import SystemFiles, push_system
from osbuilder.systems.referrers import SPDX_TYPE
from tests.conftest import REPO, TRUST_OPTIONS, Packages
from tests.integration.faultproxy import StartFaultProxy, Status
from tests.integration.helpers import client, osbuilder
from tests.integration.registry import Registry
from tests.integration.signing import Trust

pytestmark = pytest.mark.integration

SBOM = {"spdxVersion": "SPDX-2.3", "name": "osbuilder system", "packages": []}


def outputs(directory: Path, name: str = "sys") -> dict[str, bytes]:
    """A small system's files as a build writes them (and its SBOM beside them)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        f"{name}-kernel": os.urandom(3000),
        f"{name}-initrd.img": os.urandom(200_000),
        f"{name}-cmdline": b"console=ttyS0",
    }
    for file, data in files.items():
        (directory / file).write_bytes(data)
    (directory / f"{name}.spdx.json").write_text(json.dumps(SBOM))
    (directory / "other-kernel").write_bytes(b"not this system")
    return files


def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    done = osbuilder(*args, "--cache", str(tmp_path / "store"))
    return done.returncode, done.stdout, done.stderr


def manifest(registry: Registry, repository: str, reference: str) -> dict[str, object]:
    response = httpx.get(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": mediatypes.MANIFEST_ACCEPT},
    )
    response.raise_for_status()
    document: dict[str, object] = response.json()
    return document


def put_manifest(registry: Registry, repository: str, reference: str, document: object) -> str:
    data = json.dumps(document).encode()
    response = httpx.put(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        content=data,
        headers={"Content-Type": mediatypes.OCI_MANIFEST},
    )
    response.raise_for_status()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(registry: Registry, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = httpx.post(f"{registry.url}/v2/{repository}/blobs/uploads/")
    location = httpx.URL(registry.url).join(start.headers["location"])
    httpx.put(location.copy_merge_params({"digest": digest}), content=data).raise_for_status()
    return digest


def test_push_pull_round_trip_with_sbom_by_the_tag_fallback(
    registry: Registry, tmp_path: Path
) -> None:
    files = outputs(tmp_path / "out")
    ref = f"{registry.host}/systems/sys:1"
    code, out, err = cli(tmp_path, "push", "registry", ref, str(tmp_path / "out/sys"), "--json")
    assert code == 0, err
    pushed = json.loads(out)
    assert pushed["sbom"]
    document = manifest(registry, "systems/sys", "1")
    assert document["artifactType"] == SYSTEM_TYPE
    layers = document["layers"]
    assert isinstance(layers, list)
    assert sorted(layer["annotations"][TITLE] for layer in layers) == sorted(files)
    config = document["config"]
    assert isinstance(config, dict) and config["mediaType"] == SYSTEM_TYPE
    record = httpx.get(f"{registry.url}/v2/systems/sys/blobs/{config['digest']}").json()
    assert record["formats"] == ["kernel+initrd"] and record["architecture"]

    # Debian's registry has no referrers API: the SBOM is listed under the fallback tag.
    assert httpx.get(f"{registry.url}/v2/systems/sys/referrers/{pushed['digest']}").status_code
    tag = pushed["digest"].replace(":", "-")
    referrers = manifest(registry, "systems/sys", tag)
    entries = referrers["manifests"]
    assert isinstance(entries, list) and [e["artifactType"] for e in entries] == [SPDX_TYPE]
    code, out, err = cli(tmp_path, "sbom", ref)
    assert code == 0, err
    assert json.loads(out) == SBOM

    code, out, err = cli(tmp_path, "pull", ref, "-o", str(tmp_path / "pulled"))
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "pulled").iterdir()} == files

    # Without -o, pull takes images into the store: a system is not one.
    code, out, err = cli(tmp_path, "pull", ref)
    assert code == 1
    assert err.splitlines()[-1].startswith(f"osbuilder: {ref} is an osbuilder system, not an")

    # A second pull, into another directory, downloads nothing.
    code, out, err = cli(tmp_path, "pull", "--json", ref, "-o", str(tmp_path / "again"))
    assert code == 0, err
    assert json.loads(out)["transferred"] == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()} == files

    # Pushing again uploads nothing, and the SBOM is listed once.
    code, out, err = cli(tmp_path, "push", "registry", ref, str(tmp_path / "out/sys"), "--json")
    assert code == 0, err
    assert json.loads(out)["uploaded"] == []
    assert len(manifest(registry, "systems/sys", tag)["manifests"]) == 1  # type: ignore[arg-type]


def test_push_named_files_and_chunks(registry: Registry, tmp_path: Path) -> None:
    outputs(tmp_path / "out")
    disk = tmp_path / "out/sys-efi.qcow2"
    disk.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    ref = f"{registry.host}/systems/disk:1"
    code, _, err = cli(tmp_path, "push", "registry", ref, str(disk))
    assert code == 0, err
    code, _out, err = cli(tmp_path, "pull", ref, "-o", str(tmp_path / "pulled"))
    assert code == 0, err
    assert [p.name for p in (tmp_path / "pulled").iterdir()] == ["sys-efi.qcow2"]
    assert (tmp_path / "pulled/sys-efi.qcow2").read_bytes() == disk.read_bytes()


def test_several_architectures_make_an_index(registry: Registry, tmp_path: Path) -> None:
    amd = outputs(tmp_path / "amd64")
    arm = outputs(tmp_path / "arm64")
    ref = f"{registry.host}/systems/multi:1"
    code, _, err = cli(
        tmp_path,
        "push",
        "registry",
        ref,
        f"amd64={tmp_path}/amd64/sys",
        f"arm64={tmp_path}/arm64/sys",
    )
    assert code == 0, err
    index = manifest(registry, "systems/multi", "1")
    assert index["mediaType"] == mediatypes.OCI_INDEX and index["artifactType"] == SYSTEM_TYPE
    for arch, files in (("amd64", amd), ("arm64", arm)):
        code, _, err = cli(
            tmp_path, "pull", "--arch", arch, ref, "-o", str(tmp_path / f"pulled-{arch}")
        )
        assert code == 0, err
        assert {p.name: p.read_bytes() for p in (tmp_path / f"pulled-{arch}").iterdir()} == files
        code, _out, err = cli(tmp_path, "sbom", "--arch", arch, ref)
        assert code == 0, err


def test_an_ordinary_image_is_not_a_system(registry: Registry, tmp_path: Path) -> None:
    config = put_blob(registry, "plain/image", b'{"architecture":"amd64","os":"linux"}')
    put_manifest(
        registry,
        "plain/image",
        "1",
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": config, "size": 37},
            "layers": [],
        },
    )
    code, _, err = cli(
        tmp_path, "pull", f"{registry.host}/plain/image:1", "-o", str(tmp_path / "o")
    )
    assert code == 1
    assert err.splitlines() == [
        f"osbuilder: {registry.host}/plain/image:1 is not an osbuilder system (an ordinary "
        "container image)"
    ]
    assert not (tmp_path / "o").exists()
    code, _, err = cli(tmp_path, "sbom", f"{registry.host}/plain/image:1")
    assert code == 1 and "is not an osbuilder system" in err
    code, _, err = cli(tmp_path, "run", f"docker://{registry.host}/plain/image:1")
    assert code == 1 and "is not an osbuilder system" in err
    assert len(err.splitlines()) == 1


def _system(registry: Registry, repository: str, layers: list[dict[str, object]]) -> str:
    record = b'{"architecture":"amd64","osbuilderVersion":"0"}'
    config = put_blob(registry, repository, record)
    put_manifest(
        registry,
        repository,
        "1",
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": SYSTEM_TYPE,
            "config": {"mediaType": SYSTEM_TYPE, "digest": config, "size": len(record)},
            "layers": layers,
        },
    )
    return f"{registry.host}/{repository}:1"


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({}, "a layer has no org.opencontainers.image.title annotation"),
        ({TITLE: "../evil"}, "refusing the file name '../evil'"),
        ({TITLE: "a/b"}, "refusing the file name 'a/b'"),
        ({TITLE: ".."}, "refusing the file name '..'"),
        ({TITLE: ""}, "refusing the file name ''"),
    ],
)
def test_bad_titles_are_refused(
    registry: Registry, tmp_path: Path, annotations: dict[str, str], message: str
) -> None:
    blob = put_blob(registry, "bad/title", b"data")
    layer = {"mediaType": "application/octet-stream", "digest": blob, "size": 4}
    ref = _system(registry, "bad/title", [{**layer, "annotations": annotations}])
    code, _out, err = cli(tmp_path, "pull", ref, "-o", str(tmp_path / "dir/o"))
    assert code == 1
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "dir").exists() and not (tmp_path / "evil").exists()


def test_layer_digest_mismatch_writes_nothing(registry: Registry, tmp_path: Path) -> None:
    good = put_blob(registry, "bad/digest", b"good data")
    layer = {"mediaType": "application/octet-stream", "digest": good, "size": 9}
    wrong = {**layer, "annotations": {TITLE: "f"}}
    ref = _system(registry, "bad/digest", [wrong])
    # Replace the blob's content in the registry's storage: what it serves no longer
    # matches the digest.
    data = next(registry.root.rglob(f"blobs/sha256/{good[7:9]}/{good[7:]}/data"))
    data.write_bytes(b"evil data")
    code, _out, err = cli(tmp_path, "pull", ref, "-o", str(tmp_path / "o"))
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("osbuilder:")]
    assert len(errors) == 1 and "does not match its digest" in err, err
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_enormous_config_is_refused_unread(registry: Registry, tmp_path: Path) -> None:
    repository = "bad/config"
    config = put_blob(registry, repository, b"{}")
    put_manifest(
        registry,
        repository,
        "1",
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": SYSTEM_TYPE,
            "config": {"mediaType": SYSTEM_TYPE, "digest": config, "size": 1 << 40},
            "layers": [],
        },
    )
    code, _out, err = cli(
        tmp_path, "pull", f"{registry.host}/{repository}:1", "-o", str(tmp_path / "o")
    )
    assert code == 1
    assert len(err.splitlines()) == 1 and "refusing to read it" in err, err


def test_referrer_loop_is_refused(registry: Registry, tmp_path: Path) -> None:
    outputs(tmp_path / "out")
    ref = f"{registry.host}/systems/loop:1"
    code, out, err = cli(tmp_path, "push", "registry", ref, str(tmp_path / "out/sys"), "--json")
    assert code == 0, err
    digest = json.loads(out)["digest"]
    document = manifest(registry, "systems/loop", "1")
    data = json.dumps(document, sort_keys=True, separators=(",", ":"))
    assert data  # the loop: the subject listed as its own referrer
    index = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": digest,
                "size": 10,
                "artifactType": SPDX_TYPE,
            }
        ],
    }
    response = httpx.put(
        f"{registry.url}/v2/systems/loop/manifests/{digest.replace(':', '-')}",
        content=json.dumps(index).encode(),
        headers={"Content-Type": mediatypes.OCI_INDEX},
    )
    response.raise_for_status()
    code, out, err = cli(tmp_path, "sbom", ref)
    assert code == 1
    assert len(err.splitlines()) == 1 and "referrer loop" in err, err


def test_build_push_and_pull(packages: Packages, registry: Registry, tmp_path: Path) -> None:
    ref = f"{registry.host}/systems/redis:1"
    done = osbuilder(
        "build",
        *TRUST_OPTIONS,
        "--offline",
        "--cache",
        str(packages.store.root),
        "-o",
        str(tmp_path / "out"),
        "--push",
        ref,
        str(REPO / "examples/redis.yml"),
    )
    assert done.returncode == 0, done.stderr
    code, out, err = cli(tmp_path, "pull", ref, "-o", str(tmp_path / "pulled"))
    assert code == 0, err
    built = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert {p.name: p.read_bytes() for p in (tmp_path / "pulled").iterdir()} == built
    code, out, err = cli(tmp_path, "sbom", ref)
    assert code == 0, err
    sbom = json.loads(out)
    assert sbom["spdxVersion"] == "SPDX-2.3"
    config = manifest(registry, "systems/redis", "1")["config"]
    assert isinstance(config, dict)
    record = httpx.get(f"{registry.url}/v2/systems/redis/blobs/{config['digest']}").json()
    assert record["specDigest"].startswith("sha256:") and record["images"]
    assert record["formats"] == ["kernel+initrd"]


PASSWORD = {"OSBUILDER_KEY_PASSWORD": "correct horse"}


def test_signed_system_pulls_under_a_policy_and_an_unsigned_one_is_refused(
    registry: Registry, trust: Trust, tmp_path: Path
) -> None:
    (tmp_path / "keys").mkdir()
    made = osbuilder("key", "generate", str(tmp_path / "keys/cosign"), env=PASSWORD)
    assert made.returncode == 0, made.stderr
    files = outputs(tmp_path / "out")
    signed = f"{registry.host}/systems/signed:1"
    pushed = osbuilder(
        "push", "registry", signed, str(tmp_path / "out/sys"),
        "--cache", str(tmp_path / "pushstore"), "--sign-key", str(tmp_path / "keys/cosign.key"),
        env=PASSWORD,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert "signed" in pushed.stdout
    unsigned = f"{registry.host}/systems/unsigned:1"
    assert cli(tmp_path, "push", "registry", unsigned, str(tmp_path / "out/sys"))[0] == 0
    policy = trust.policy(
        [{"type": "sigstoreSigned", "keyPath": str(tmp_path / "keys/cosign.pub")}]
    )
    options = ("--policy", str(policy), "--registries-d", str(trust.registries_d))
    code, _, err = cli(tmp_path, "pull", *options, signed, "-o", str(tmp_path / "pulled"))
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "pulled").iterdir()} == files
    code, _, err = cli(tmp_path, "pull", *options, unsigned, "-o", str(tmp_path / "refused"))
    assert code == 1
    assert len(err.splitlines()) == 1 and "signature" in err, err
    assert not (tmp_path / "refused").exists()


def test_chunked_upload_resumes_where_the_session_stopped(
    registry: Registry, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    disk = tmp_path / "sys.qcow2"
    disk.write_bytes(os.urandom(5 * 64 * 1024 + 123))
    proxy = fault_proxy(registry)
    broken = proxy.inject(Status(502), method="PATCH", path=r"/blobs/uploads/", times=2)
    options = RegistryOptions(retries=3, backoff=0.01, chunk_size=64 * 1024)
    with client(options) as registry_client:
        push_system(
            registry_client,
            parse_reference(f"{proxy.host}/systems/chunked:1"),
            [SystemFiles(BuildRecord("0", "amd64"), [disk])],
        )
    assert broken.fired == 2
    sessions = [r for r in proxy.requests if r.method == "POST"]
    assert len(sessions) == 2  # the disk's and the record's: no session started again
    asked = [r for r in proxy.requests if r.method == "GET" and "/blobs/uploads/" in r.target]
    assert len(asked) == 2  # once after each failure: how much the session holds
    code, _, err = cli(
        tmp_path, "pull", f"{registry.host}/systems/chunked:1", "-o", str(tmp_path / "pulled")
    )
    assert code == 0, err
    assert (tmp_path / "pulled/sys.qcow2").read_bytes() == disk.read_bytes()


def test_a_system_with_the_empty_config_pulls(registry: Registry, tmp_path: Path) -> None:
    """As `oras push --artifact-type application/vnd.osbuilder.system.v1+json` makes it:
    the empty descriptor as config, the type in artifactType only."""
    empty = put_blob(registry, "other/tool", b"{}")
    data = os.urandom(1000)
    blob = put_blob(registry, "other/tool", data)
    put_manifest(
        registry,
        "other/tool",
        "1",
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": SYSTEM_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": empty,
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/octet-stream",
                    "digest": blob,
                    "size": len(data),
                    "annotations": {TITLE: "x-kernel"},
                }
            ],
        },
    )
    code, _, err = cli(tmp_path, "pull", f"{registry.host}/other/tool:1", "-o", str(tmp_path / "o"))
    assert code == 0, err
    assert (tmp_path / "o/x-kernel").read_bytes() == data


def test_a_second_sbom_is_added_to_the_referrers_tag(registry: Registry, tmp_path: Path) -> None:
    outputs(tmp_path / "out")
    ref = f"{registry.host}/systems/twice:1"
    code, out, err = cli(tmp_path, "push", "registry", ref, str(tmp_path / "out/sys"), "--json")
    assert code == 0, err
    digest = json.loads(out)["digest"]
    newer = {**SBOM, "name": "newer"}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    code, _, err = cli(
        tmp_path,
        "push",
        "registry",
        ref,
        str(tmp_path / "out/sys"),
        "--sbom",
        str(tmp_path / "newer.json"),
    )
    assert code == 0, err
    entries = manifest(registry, "systems/twice", digest.replace(":", "-"))["manifests"]
    assert isinstance(entries, list) and len(entries) == 2  # read, added to, written back
    code, out, err = cli(tmp_path, "sbom", ref)
    assert code == 0, err
    assert json.loads(out) == newer  # the last attached


def test_build_push_signs_what_it_pushes(
    packages: Packages, registry: Registry, trust: Trust, tmp_path: Path
) -> None:
    (tmp_path / "keys").mkdir()
    made = osbuilder("key", "generate", str(tmp_path / "keys/cosign"), env=PASSWORD)
    assert made.returncode == 0, made.stderr
    ref = f"{registry.host}/systems/signed-redis:1"
    done = osbuilder(
        "build", *TRUST_OPTIONS, "--offline", "--cache", str(packages.store.root),
        "-o", str(tmp_path / "out"), "--push", ref,
        "--sign-key", str(tmp_path / "keys/cosign.key"), str(REPO / "examples/redis.yml"),
        env=PASSWORD,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    policy = trust.policy(
        [{"type": "sigstoreSigned", "keyPath": str(tmp_path / "keys/cosign.pub")}]
    )
    options = ("--policy", str(policy), "--registries-d", str(trust.registries_d))
    code, _, err = cli(tmp_path, "pull", *options, ref, "-o", str(tmp_path / "pulled"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pulled").iterdir()) == [
        "redis-cmdline",
        "redis-initrd.img",
        "redis-kernel",
    ]
    unsigned = osbuilder(
        "build", "--sign-key", str(tmp_path / "keys/cosign.key"), "x.yml", env=PASSWORD
    )
    assert unsigned.returncode == 1
    assert unsigned.stderr.splitlines() == [
        "osbuilder: --sign-key and --sign-by sign what --push REF pushes: add --push REF"
    ]


def test_build_sbom_file_then_push_registry(
    packages: Packages, registry: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = osbuilder(
        "build", *TRUST_OPTIONS, "--offline", "--cache", str(packages.store.root), "-o", str(out),
        "--sbom-file", str(out / "redis.spdx.json"), str(REPO / "examples/redis.yml"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ref = f"{registry.host}/systems/redis:2"
    code, out_text, err = cli(tmp_path, "push", "registry", ref, str(out / "redis"), "--json")
    assert code == 0, err
    document = manifest(registry, "systems/redis", "2")
    layers = document["layers"]
    assert isinstance(layers, list)
    assert sorted(layer["annotations"][TITLE] for layer in layers) == [
        "redis-cmdline",
        "redis-initrd.img",
        "redis-kernel",
    ]  # the SBOM beside them is a referrer, not a file of the system
    code, sbom, err = cli(tmp_path, "sbom", ref)
    assert code == 0, err
    assert json.loads(sbom) == json.loads((out / "redis.spdx.json").read_bytes())
    assert json.loads(out_text)["sbom"]
    refused = osbuilder("build", "--no-sbom", "--sbom-file", "x.json", "x.yml")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "osbuilder: --sbom-file writes the SBOM --no-sbom leaves out: give one of them"
    ]
