"""Systems and other tools: the oras Python SDK pulls what `osbuilder push registry` pushed
and pushes what `osbuilder pull -o` reads; `skopeo copy --all` carries a system between
registries; a system goes through a TLS front with a private CA whose blob reads are
redirected to another host. Real servers only (Debian's docker-registry, nginx)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import oras.provider  # type: ignore[import-untyped]
import pytest

from osbuilder.oci import mediatypes
from osbuilder.systems.artifact import EMPTY_TYPE, SYSTEM_TYPE, TITLE, BuildRecord
from tests.integration.helpers import osbuilder
from tests.integration.images import OciIndex, push, skopeo
from tests.integration.registry import Registry, running_registry
from tests.integration.tls import CertificateAuthority, running_wild_registry

pytestmark = pytest.mark.integration


@pytest.fixture
def other_registry(tmp_path: Path) -> Iterator[Registry]:
    workdir = tmp_path / "other-registry"
    workdir.mkdir()
    with running_registry(workdir) as registry:
        yield registry


def outputs(directory: Path, name: str = "sys") -> dict[str, bytes]:
    """A small system's files as a build writes them."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        f"{name}-kernel": os.urandom(3000),
        f"{name}-initrd.img": os.urandom(300_000),
        f"{name}-cmdline": b"console=ttyS0 quiet",
    }
    for file, data in files.items():
        (directory / file).write_bytes(data)
    return files


def cli(store: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = osbuilder(*args, "--cache", str(store), env=env)
    return done.returncode, done.stdout, done.stderr


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def oras_client(registry: Registry | str, kind: Any = None, **options: Any) -> Any:
    """The oras SDK's client (of `kind`, default its own) for a registry, plain HTTP
    unless `options` say otherwise; no *_proxy variable of the environment applies (the
    tests stay on loopback)."""
    host = registry if isinstance(registry, str) else registry.host
    client = (kind or oras.provider.Registry)(hostname=host, **(options or {"insecure": True}))
    client.session.trust_env = False
    return client


def manifest(registry: Registry, repository: str, reference: str) -> dict[str, Any]:
    response = httpx.get(
        f"{registry.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": mediatypes.MANIFEST_ACCEPT},
    )
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def test_oras_pulls_what_osbuilder_pushed(registry: Registry, tmp_path: Path) -> None:
    files = outputs(tmp_path / "out")
    ref = f"{registry.host}/systems/sys:1"
    code, _, err = cli(tmp_path / "store", "push", "registry", ref, str(tmp_path / "out/sys"))
    assert code == 0, err
    pulled = oras_client(registry).pull(target=ref, outdir=str(tmp_path / "oras"))
    assert sorted(Path(p).name for p in pulled) == sorted(files)
    assert contents(tmp_path / "oras") == files


class _TypedOras(oras.provider.Registry):  # type: ignore[misc]
    """The SDK's client with the artifactType that oras-go (`oras push --artifact-type`)
    writes and the SDK's push has no parameter for: added to the manifest it uploads."""

    def upload_manifest(self, manifest: dict[str, Any], container: Any) -> Any:
        return super().upload_manifest({**manifest, "artifactType": SYSTEM_TYPE}, container)


def _oras_push(
    client: Any, ref: str, directory: Path, config: str, media_type: str | None = None
) -> None:
    """The SDK's push of `directory`'s files, each of `media_type` (default: the SDK's)."""
    paths = [f"{p}:{media_type}" if media_type else str(p) for p in sorted(directory.iterdir())]
    response = client.push(
        target=ref,
        files=paths,
        manifest_config=config,
        disable_path_validation=True,
        quiet=True,
    )
    assert response.status_code == 201, response.text


def test_osbuilder_pulls_what_oras_pushed_with_a_record_as_config(
    registry: Registry, tmp_path: Path
) -> None:
    """The SDK writes no artifactType; a config typed as a system is the artifact's type
    (the image-spec: without artifactType, the config's mediaType says what it is). Its
    layers' media type (the SDK's default here) does not matter."""
    files = outputs(tmp_path / "out")
    record = tmp_path / "record.json"
    record.write_bytes(BuildRecord("oras", "amd64", formats=["kernel+initrd"]).as_bytes())
    ref = f"{registry.host}/oras/record:1"
    _oras_push(oras_client(registry), ref, tmp_path / "out", f"{record}:{SYSTEM_TYPE}")
    document = manifest(registry, "oras/record", "1")
    assert "artifactType" not in document
    assert document["config"]["mediaType"] == SYSTEM_TYPE
    assert sorted(layer["annotations"][TITLE] for layer in document["layers"]) == sorted(files)
    assert {layer["mediaType"] for layer in document["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar"
    }
    code, _, err = cli(
        tmp_path / "store", "pull", "--arch", "amd64", ref, "-o", str(tmp_path / "o")
    )
    assert code == 0, err
    assert contents(tmp_path / "o") == files


def test_osbuilder_pulls_what_oras_pushed_with_the_empty_config(
    registry: Registry, tmp_path: Path
) -> None:
    """oras-go's layout: artifactType, the empty descriptor as config."""
    files = outputs(tmp_path / "out")
    ref = f"{registry.host}/oras/empty:1"
    client = oras_client(registry, _TypedOras)
    config = f"{tmp_path / 'none'}:{EMPTY_TYPE}"
    _oras_push(client, ref, tmp_path / "out", config, "application/octet-stream")
    document = manifest(registry, "oras/empty", "1")
    assert document["artifactType"] == SYSTEM_TYPE
    assert document["config"]["mediaType"] == EMPTY_TYPE
    code, _, err = cli(tmp_path / "store", "pull", ref, "-o", str(tmp_path / "o"))
    assert code == 0, err
    assert contents(tmp_path / "o") == files


def test_oras_default_layout_is_not_a_system(registry: Registry, tmp_path: Path) -> None:
    """Without a type of a system anywhere (the SDK's unknown config), it is refused."""
    outputs(tmp_path / "out")
    ref = f"{registry.host}/oras/untyped:1"
    _oras_push(oras_client(registry), ref, tmp_path / "out", f"{tmp_path / 'none'}")
    code, _, err = cli(tmp_path / "store", "pull", ref, "-o", str(tmp_path / "o"))
    assert code == 1
    assert err.splitlines() == [
        f"osbuilder: {ref} is not an osbuilder system (an artifact of type "
        "application/vnd.unknown.config.v1+json)"
    ]
    assert not (tmp_path / "o").exists()


def test_skopeo_copy_all_keeps_a_system_pullable(
    registry: Registry, other_registry: Registry, tmp_path: Path
) -> None:
    amd = outputs(tmp_path / "amd64")
    arm = outputs(tmp_path / "arm64")
    sbom = {"spdxVersion": "SPDX-2.3", "name": "amd64 system", "packages": []}
    (tmp_path / "amd64/sys.spdx.json").write_text(json.dumps(sbom))
    source = f"{registry.host}/systems/multi:1"
    code, out, err = cli(
        tmp_path / "store", "push", "registry", "--json", source,
        f"amd64={tmp_path}/amd64/sys", f"arm64={tmp_path}/arm64/sys",
    )  # fmt: skip
    assert code == 0, err
    digest = json.loads(out)["digest"]
    copied = f"{other_registry.host}/mirror/multi:1"
    skopeo(
        "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{source}", f"docker://{copied}",
    )  # fmt: skip
    index = manifest(other_registry, "mirror/multi", "1")
    source_index = manifest(registry, "systems/multi", "1")
    # skopeo 1.9 writes the index anew, without artifactType (it predates the field);
    # the manifests it lists are copied as they were, with theirs.
    assert [e["digest"] for e in index["manifests"]] == [
        e["digest"] for e in source_index["manifests"]
    ]
    for entry in index["manifests"]:
        copied_manifest = manifest(other_registry, "mirror/multi", entry["digest"])
        assert copied_manifest["artifactType"] == SYSTEM_TYPE
    assert json.loads(out)["digest"] == digest
    for arch, files in (("amd64", amd), ("arm64", arm)):
        target = tmp_path / f"pulled-{arch}"
        code, _, err = cli(
            tmp_path / f"fresh-{arch}", "pull", "--arch", arch, copied, "-o", str(target)
        )
        assert code == 0, err
        assert contents(target) == files
    # The SBOM is listed under the tag of the referrers schema, which `copy --all` of
    # one tag leaves behind. Copied too, it lists the same referrer, but without its
    # artifactType (skopeo 1.9 writes the index anew): the referrer's manifest says it.
    amd64 = json.loads(out)["manifests"]["amd64"]
    code, _, err = cli(tmp_path / "store", "sbom", "--arch", "amd64", copied)
    assert code == 1 and err.splitlines() == [
        f"osbuilder: {copied}: the system has no SBOM attached"
    ], err
    tag = amd64.replace(":", "-")
    skopeo(
        "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{registry.host}/systems/multi:{tag}",
        f"docker://{other_registry.host}/mirror/multi:{tag}",
    )  # fmt: skip
    code, printed, err = cli(tmp_path / "store", "sbom", "--arch", "amd64", copied)
    assert code == 0, err
    assert json.loads(printed) == sbom


def test_push_and_pull_a_system_through_tls_with_blobs_redirected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSBUILDER_CERTS_D", str(tmp_path / "no-certs.d"))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ca = CertificateAuthority(tmp_path / "ca")
    files = outputs(tmp_path / "out")
    with running_wild_registry(tmp_path / "wild", ca) as wild:
        env = {"SSL_CERT_FILE": str(ca.path)}
        ref = f"{wild.host}/systems/tls:1"
        code, _, err = cli(
            tmp_path / "push-store", "push", "registry", ref, str(tmp_path / "out/sys"), env=env
        )
        assert code == 0, err
        code, _, err = cli(tmp_path / "store", "pull", ref, "-o", str(tmp_path / "o"), env=env)
        assert code == 0, err
        assert contents(tmp_path / "o") == files
        front = [line for line in wild.front_requests() if "/blobs/sha256:" in line.uri]
        redirected = [line for line in front if line.method == "GET" and line.status == 307]
        served = [line for line in wild.blob_requests() if line.method == "GET"]
        # The config and the three files: each read redirected, and served by the other host.
        assert len(redirected) == len(served) == len(files) + 1
        assert all(line.status == 200 for line in served)
        uploads = [line for line in wild.front_requests() if line.method in ("POST", "PUT")]
        assert uploads and all(line.status < 400 for line in uploads)
        # oras, trusting the same CA, follows the same redirects to the same files.
        client = oras_client(wild.host, tls_verify=str(ca.path))
        client.pull(target=ref, outdir=str(tmp_path / "oras"))
        assert contents(tmp_path / "oras") == files


def test_an_untyped_index_of_images_is_still_not_a_system(
    registry: Registry, multiarch_image: OciIndex, tmp_path: Path
) -> None:
    """An index typing nothing is judged by the manifest chosen from it: an image's."""
    pushed = push(multiarch_image, registry, "plain/multi", "v1")
    code, _, err = cli(tmp_path / "store", "pull", pushed.reference, "-o", str(tmp_path / "o"))
    assert code == 1
    assert err.splitlines() == [
        f"osbuilder: {pushed.reference} is not an osbuilder system (an ordinary container image)"
    ]
    assert not (tmp_path / "o").exists()
    code, _, err = cli(tmp_path / "store", "sbom", pushed.reference)
    assert code == 1 and err.splitlines() == [
        f"osbuilder: {pushed.reference} is not an osbuilder system (an ordinary container image)"
    ]
