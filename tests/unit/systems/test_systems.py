"""The system artifact: manifests, records and titles (osbuilder/systems/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuilder.commands.systems import COMMAND, route
from osbuilder.errors import UserError
from osbuilder.oci import mediatypes
from osbuilder.oci.model import Descriptor, sha256_digest
from osbuilder.systems.artifact import (
    MAX_CONFIG_SIZE,
    SYSTEM_TYPE,
    TITLE,
    BuildRecord,
    check_title,
    describes_system,
    file_descriptor,
    index_bytes,
    manifest_bytes,
    parse_record,
    parse_system_manifest,
    untyped_index,
)
from osbuilder.systems.pull import boot_path
from osbuilder.systems.push import guess_formats, output_files, split_arch
from osbuilder.systems.referrers import SPDX_TYPE, fallback_tag, referrer_manifest

DIGEST = "sha256:" + "ab" * 32


def _config(size: int = 10) -> Descriptor:
    return Descriptor(SYSTEM_TYPE, DIGEST, size)


def test_manifest_is_an_artifact_with_titled_layers() -> None:
    files = [file_descriptor(DIGEST, 5, "redis-kernel"), file_descriptor(DIGEST, 7, "r-cmdline")]
    data = manifest_bytes(_config(), files)
    document = json.loads(data)
    assert document["mediaType"] == mediatypes.OCI_MANIFEST
    assert document["artifactType"] == SYSTEM_TYPE
    assert document["config"]["mediaType"] == SYSTEM_TYPE
    assert [layer["annotations"][TITLE] for layer in document["layers"]] == [
        "redis-kernel",
        "r-cmdline",
    ]
    assert {layer["mediaType"] for layer in document["layers"]} == {"application/octet-stream"}
    assert manifest_bytes(_config(), files) == data  # canonical: one content, one digest
    parsed = parse_system_manifest(data, "x")
    assert parsed.files == files and parsed.config == _config()


def test_index_of_architectures() -> None:
    entry = Descriptor(mediatypes.OCI_MANIFEST, DIGEST, 3, extra={"artifactType": SYSTEM_TYPE})
    document = json.loads(index_bytes([entry]))
    assert document["artifactType"] == SYSTEM_TYPE and describes_system(document)
    untyped = {"manifests": [entry.as_json()]}
    assert describes_system(untyped)
    assert not describes_system({"manifests": [{**entry.as_json(), "artifactType": "x"}]})
    bare = {k: v for k, v in entry.as_json().items() if k != "artifactType"}
    assert untyped_index({"manifests": [bare]}) and not describes_system({"manifests": [bare]})
    assert not untyped_index(untyped) and not untyped_index({"manifests": []})


def test_record_round_trip() -> None:
    record = BuildRecord(
        "1.0", "amd64", formats=["kernel+initrd"], spec_digest=DIGEST, images={"a": DIGEST}
    )
    data = record.as_bytes()
    assert json.loads(data)["specDigest"] == DIGEST
    assert parse_record(data, "x") == record
    with pytest.raises(UserError, match="not an osbuilder build record"):
        parse_record(b'{"architecture": 1}', "x")


@pytest.mark.parametrize("title", ["redis-kernel", "redis-efi.qcow2", "a b", "ü"])
def test_good_titles(title: str) -> None:
    assert check_title(title, "x") == title


@pytest.mark.parametrize(
    "title", ["", "/", "a/b", "../a", "..", ".", ".hidden", "a\\b", "a\0", "a\nb", "x" * 256]
)
def test_bad_titles(title: str) -> None:
    with pytest.raises(UserError, match="refusing the file name"):
        check_title(title, "x")


def test_missing_title() -> None:
    with pytest.raises(UserError, match=r"has no org\.opencontainers\.image\.title"):
        check_title(None, "x")


def _manifest(**changes: object) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": SYSTEM_TYPE,
        "config": _config().as_json(),
        "layers": [file_descriptor(DIGEST, 1, "f").as_json()],
        **changes,
    }
    return json.dumps(document).encode()


def test_not_a_system() -> None:
    image = _manifest(
        artifactType=None, config={"mediaType": mediatypes.OCI_CONFIG, "digest": DIGEST, "size": 1}
    )
    with pytest.raises(UserError, match=r"not an osbuilder system \(an ordinary container image\)"):
        parse_system_manifest(image, "r")
    with pytest.raises(UserError, match="an artifact of type application/x"):
        parse_system_manifest(_manifest(artifactType="application/x"), "r")
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    with pytest.raises(UserError, match=r"not an osbuilder system \(an index of container"):
        parse_system_manifest(index, "r")
    with pytest.raises(UserError, match="not a JSON"):
        parse_system_manifest(b"\xff", "r")


def test_enormous_config_and_duplicate_titles() -> None:
    with pytest.raises(UserError, match="refusing to read it"):
        parse_system_manifest(_manifest(config=_config(MAX_CONFIG_SIZE + 1).as_json()), "r")
    twice = [file_descriptor(DIGEST, 1, "f").as_json()] * 2
    with pytest.raises(UserError, match="two layers are titled 'f'"):
        parse_system_manifest(_manifest(layers=twice), "r")


def test_output_prefix_takes_the_systems_files(tmp_path: Path) -> None:
    for name in ("redis-kernel", "redis-initrd.img", "redis.qcow2", "redis.spdx.json",
                 "redisx-kernel", ".redis-kernel.1234.partial", "other-kernel"):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "redis-state").mkdir()
    files, sbom = output_files([tmp_path / "redis"])
    assert sorted(p.name for p in files) == ["redis-initrd.img", "redis-kernel", "redis.qcow2"]
    assert sbom == tmp_path / "redis.spdx.json"
    with pytest.raises(UserError, match=r"no file of .* is named nothing-"):
        output_files([tmp_path / "nothing"])
    assert guess_formats(files) == ["kernel+initrd", "qcow2-bios"]


def test_split_arch_and_boot_path(tmp_path: Path) -> None:
    assert split_arch("arm64=out/redis") == ("arm64", "out/redis")
    assert split_arch("out/redis") == (None, "out/redis")
    assert boot_path(tmp_path, ["r-cmdline", "r-kernel"]) == tmp_path / "r"
    assert boot_path(tmp_path, ["r.qcow2"]) == tmp_path / "r.qcow2"
    with pytest.raises(UserError, match="no file osbuilder run can boot"):
        boot_path(tmp_path, ["r.tar"])


def test_referrer_manifest_points_at_its_subject() -> None:
    subject = Descriptor(mediatypes.OCI_MANIFEST, DIGEST, 99)
    blob = Descriptor(SPDX_TYPE, DIGEST, 4, annotations={TITLE: "sbom.spdx.json"})
    document = json.loads(referrer_manifest(subject, SPDX_TYPE, blob, {}))
    assert document["subject"] == subject.as_json()
    assert document["artifactType"] == SPDX_TYPE
    assert document["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": sha256_digest(b"{}"),
        "size": 2,
    }
    assert fallback_tag(DIGEST) == "sha256-" + "ab" * 32


def test_push_registry_is_routed_only_right_after_push() -> None:
    assert route(["push", "registry", "r", "out/x"]) == [COMMAND, "r", "out/x"]
    assert route(["-v", "push", "registry", "r"]) == ["-v", COMMAND, "r"]
    assert route(["push", "--to", "registry", "r"]) == ["push", "--to", "registry", "r"]
    assert route(["pull", "registry"]) == ["pull", "registry"]
