"""Authentication (Basic, token), push, mirrors and OCI archives against real registries."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.oci.auth import CredentialStore
from osbuilder.oci.push import push as osbuilder_push
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.registry import RegistryOptions
from osbuilder.oci.store import ContentStore
from tests.integration.faultproxy import StartFaultProxy, Status
from tests.integration.helpers import (
    ARM64,
    auth_file,
    blob_files_are_valid,
    client,
    osbuilder,
    pull,
)
from tests.integration.images import OciImage, OciIndex, inspect_raw, push, skopeo
from tests.integration.registry import Registry, running_registry

pytestmark = pytest.mark.integration


# --- authentication ------------------------------------------------------------------------------


def test_basic_auth_with_credentials_from_registry_auth_file(
    basic_registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, basic_registry, "private/app", "v1")
    assert basic_registry.creds is not None
    creds = auth_file(tmp_path, basic_registry.host, basic_registry.creds)
    store = str(tmp_path / "store")
    denied = osbuilder("pull", "--cache", store, pushed.reference)
    assert denied.returncode == 1
    assert "authentication required; log in to " + basic_registry.host in denied.stderr
    allowed = osbuilder(
        "pull", "--cache", store, pushed.reference, env={"REGISTRY_AUTH_FILE": str(creds)}
    )
    assert allowed.returncode == 0, allowed.stderr
    assert basic_registry.password is not None
    assert basic_registry.password not in allowed.stderr + allowed.stdout + denied.stderr


def test_docker_config_json_credentials(
    basic_registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, basic_registry, "private/docker", "v1")
    assert basic_registry.creds is not None
    (tmp_path / "docker").mkdir()
    auth_file(tmp_path / "docker", basic_registry.host, basic_registry.creds).rename(
        tmp_path / "docker/config.json"
    )
    result = osbuilder(
        "pull",
        "--cache",
        str(tmp_path / "store"),
        pushed.reference,
        env={"DOCKER_CONFIG": str(tmp_path / "docker")},
    )
    assert result.returncode == 0, result.stderr


def test_wrong_password_is_a_clean_error(
    basic_registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, basic_registry, "private/wrong", "v1")
    creds = auth_file(tmp_path, basic_registry.host, "alice:not-the-password")
    result = osbuilder(
        "pull",
        "--cache",
        str(tmp_path / "store"),
        pushed.reference,
        env={"REGISTRY_AUTH_FILE": str(creds)},
    )
    assert result.returncode == 1
    assert "not-the-password" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_token_auth_pull_and_push(
    token_registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, token_registry, "tok/app", "v1")
    assert token_registry.creds is not None
    credentials = CredentialStore([auth_file(tmp_path, token_registry.host, token_registry.creds)])
    store = ContentStore(tmp_path / "store")
    requests_before = len(token_registry.token_requests)
    result = pull(store, pushed.reference, registry_client=client(credentials=credentials))
    assert result.image.digest == pushed.digest
    asked = token_registry.token_requests[requests_before:]
    assert asked, "the registry's challenge sent us to the token server"
    assert all(r.username == token_registry.username for r in asked)
    assert {scope for r in asked for scope in r.scopes} == {"repository:tok/app:pull"}
    assert len(asked) == 1  # one token, reused for the manifest and every blob

    with client(credentials=credentials) as registry_client:
        destination = parse_reference(f"{token_registry.host}/tok/copy:v2")
        osbuilder_push(store, registry_client, pushed.reference, destination)
    assert {scope for r in token_registry.token_requests for scope in r.scopes} >= {
        "repository:tok/copy:pull,push",
        "repository:tok/app:pull",
    }
    raw = inspect_raw(token_registry, "tok/copy:v2")
    assert raw == pushed.raw


def test_token_server_refusal_is_a_clean_error(
    token_registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, token_registry, "tok/secret", "v1")
    result = osbuilder("pull", "--cache", str(tmp_path / "store"), pushed.reference)
    assert result.returncode == 1
    assert "refused access (401): log in first" in result.stderr


# --- push ----------------------------------------------------------------------------------------


def test_push_reads_back_with_skopeo(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "src/app", "v1")
    store = ContentStore(tmp_path / "store")
    pull(store, pushed.reference)
    other = _second_registry(tmp_path)
    with other as target:
        result = osbuilder(
            "push",
            "--cache",
            str(store.root),
            "--json",
            pushed.reference,
            "--to",
            f"{target.host}/dst/app:v9",
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["digest"] == pushed.digest
        assert len(summary["uploaded"]) == len(small_image.layers) + 1
        inspected = json.loads(
            skopeo("inspect", "--tls-verify=false", f"docker://{target.host}/dst/app:v9").stdout
        )
        assert inspected["Digest"] == pushed.digest
        skopeo(
            "copy",
            "--src-tls-verify=false",
            f"docker://{target.host}/dst/app:v9",
            f"oci:{tmp_path / 'copy'}:v9",
        )
        index = json.loads((tmp_path / "copy/index.json").read_text())
        assert index["manifests"][0]["digest"] == pushed.digest
        again = osbuilder(
            "push",
            "--cache",
            str(store.root),
            "--json",
            pushed.reference,
            "--to",
            f"{target.host}/dst/app:v9",
        )
        assert json.loads(again.stdout)["uploaded"] == []  # HEAD found every blob


def test_push_within_a_registry_mounts_blobs(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "from/repo", "v1")
    store = ContentStore(tmp_path / "store")
    pull(store, pushed.reference)
    with client() as registry_client:
        result = osbuilder_push(
            store, registry_client, pushed.reference, parse_reference(f"{registry.host}/to/repo:v1")
        )
    assert len(result.mounted) == len(small_image.layers) + 1
    assert result.uploaded == []
    assert inspect_raw(registry, "to/repo:v1") == pushed.raw


def test_chunked_upload(
    registry: Registry, small_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "chunk/src", "v1")
    store = ContentStore(tmp_path / "store")
    pull(store, pushed.reference)
    proxy = fault_proxy(registry)
    options = RegistryOptions(retries=3, backoff=0.01, chunk_size=64 * 1024)
    with client(options) as registry_client:
        osbuilder_push(
            store, registry_client, pushed.reference, parse_reference(f"{proxy.host}/chunk/dst:v1")
        )
    patches = [r for r in proxy.requests if r.method == "PATCH"]
    big_layer = max(small_image.layers, key=lambda layer: layer.descriptor.size)
    assert len(patches) >= big_layer.descriptor.size // (64 * 1024)
    assert inspect_raw(registry, "chunk/dst:v1") == pushed.raw
    fresh = ContentStore(tmp_path / "fresh")
    pull(fresh, f"{registry.host}/chunk/dst:v1")
    blob_files_are_valid(fresh)


def test_push_of_a_multi_arch_index(
    registry: Registry, multiarch_image: OciIndex, tmp_path: Path
) -> None:
    pushed = push(multiarch_image, registry, "multi/src", "v1")
    store = ContentStore(tmp_path / "store")
    pull(store, pushed.reference)
    with client() as registry_client, pytest.raises(UserError, match="not in the store"):
        osbuilder_push(
            store,
            registry_client,
            pushed.reference,
            parse_reference(f"{registry.host}/multi/dst:v1"),
        )
    pull(store, pushed.reference, target=ARM64)
    with client() as registry_client:
        osbuilder_push(
            store,
            registry_client,
            pushed.reference,
            parse_reference(f"{registry.host}/multi/dst:v1"),
        )
    assert inspect_raw(registry, "multi/dst:v1") == pushed.raw


def test_push_failure_is_one_clean_error(
    registry: Registry, small_image: OciImage, fault_proxy: StartFaultProxy, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "fail/src", "v1")
    store = tmp_path / "store"
    osbuilder("pull", "--cache", str(store), pushed.reference, check=True)
    proxy = fault_proxy(registry)
    proxy.inject(Status(500), path="/blobs/uploads/", times=None)
    result = osbuilder(
        "push",
        "--retries",
        "1",
        "--cache",
        str(store),
        pushed.reference,
        "--to",
        f"{proxy.host}/fail/dst:v1",
    )
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "HTTP 500" in result.stderr


# --- mirrors -------------------------------------------------------------------------------------


def test_mirror_serves_pulls_and_falls_back_to_the_origin(
    registry: Registry,
    small_image: OciImage,
    multiarch_image: OciIndex,
    fault_proxy: StartFaultProxy,
    tmp_path: Path,
) -> None:
    origin = fault_proxy(registry)
    push(small_image, registry, "mirrored/app", "v1")
    push(multiarch_image, registry, "origin/only", "v1")
    with _second_registry(tmp_path) as mirror:
        push(small_image, mirror, "mirrored/app", "v1")
        store = str(tmp_path / "store")
        mirror_flag = f"{origin.host}=http://{mirror.host}"
        served = osbuilder(
            "pull",
            "--cache",
            store,
            "--registry-mirror",
            mirror_flag,
            f"{origin.host}/mirrored/app:v1",
        )
        assert served.returncode == 0, served.stderr
        assert origin.requests == []  # the mirror had it all
        fallback = osbuilder(
            "pull",
            "--cache",
            store,
            "--registry-mirror",
            mirror_flag,
            f"{origin.host}/origin/only:v1",
        )
        assert fallback.returncode == 0, fallback.stderr
        assert any("/origin/only/manifests/" in r.target for r in origin.requests)
    bad = osbuilder("pull", "--registry-mirror", "docker.io", "redis")
    assert bad.returncode == 1
    assert "must be REGISTRY=URL" in bad.stderr


# --- OCI archives and cache commands -------------------------------------------------------------


def test_cache_ls_rm_gc_export_import(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "arch/app", "v1")
    store = str(tmp_path / "store")
    osbuilder("pull", "--cache", store, pushed.reference, check=True)
    listing = osbuilder("cache", "ls", "--cache", store, "--json", check=True)
    assert json.loads(listing.stdout) == [
        {
            "name": pushed.reference,
            "digest": pushed.digest,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
        }
    ]
    archive = tmp_path / "app.tar"
    osbuilder("cache", "export", "--cache", store, pushed.reference, "-o", str(archive), check=True)
    inspected = json.loads(skopeo("inspect", f"oci-archive:{archive}").stdout)
    assert inspected["Digest"] == pushed.digest
    with tarfile.open(archive) as tar:
        blobs = sorted(f"blobs/sha256/{p.name}" for p in (Path(store) / "blobs/sha256").iterdir())
        assert tar.getnames() == ["oci-layout", "index.json", *blobs]

    assert osbuilder("cache", "rm", "--cache", store, pushed.reference).returncode == 0
    missing = osbuilder("cache", "rm", "--cache", store, pushed.reference)
    assert missing.returncode == 1 and "not in the content store" in missing.stderr
    gc = osbuilder("cache", "gc", "--cache", store, check=True)
    assert gc.stdout.startswith(f"removed {len(small_image.layers) + 2} blobs")
    assert list((Path(store) / "blobs/sha256").iterdir()) == []

    imported = osbuilder("cache", "import", "--cache", store, str(archive), check=True)
    assert imported.stdout.strip() == pushed.reference
    offline = osbuilder("pull", "--offline", "--cache", store, pushed.reference)
    assert offline.returncode == 0, offline.stderr


def test_import_of_an_archive_made_by_skopeo(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    pushed = push(small_image, registry, "sko/app", "v1")
    archive = tmp_path / "sko.tar"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        f"docker://{pushed.reference}",
        f"oci-archive:{archive}:{pushed.reference}",
    )
    result = osbuilder("cache", "import", "--cache", str(tmp_path / "store"), str(archive))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == pushed.reference


def exported(registry: Registry, image: OciImage, repository: str, tmp_path: Path) -> Path:
    """`image` pushed, pulled into a store and exported with `osbuilder cache export`."""
    pushed = push(image, registry, repository, "v1")
    store = str(tmp_path / "exported-from")
    osbuilder("pull", "--cache", store, pushed.reference, check=True)
    archive = tmp_path / "exported.tar"
    osbuilder("cache", "export", "--cache", store, pushed.reference, "-o", str(archive), check=True)
    return archive


def test_import_rejects_a_tampered_archive(
    tmp_path: Path, registry: Registry, small_image: OciImage
) -> None:
    archive = exported(registry, small_image, "tamper/app", tmp_path)
    tampered = tmp_path / "bad.tar"
    with tarfile.open(archive) as source, tarfile.open(tampered, "w") as target:
        for member in source:
            data = source.extractfile(member)
            content = data.read() if data else b""
            if member.name.startswith("blobs/") and member.size > 1000:
                content = content[:-1] + bytes([content[-1] ^ 1])

            target.addfile(member, io.BytesIO(content))
    fresh = str(tmp_path / "fresh")
    result = osbuilder("cache", "import", "--cache", fresh, str(tampered))
    assert result.returncode == 1
    assert "does not match its digest" in result.stderr
    assert json.loads(osbuilder("cache", "ls", "--json", "--cache", fresh).stdout) == []
    assert not list(Path(fresh, "ingest").glob("*.partial"))


def test_an_archive_that_cannot_be_imported_leaves_no_partial_blob(
    registry: Registry, small_image: OciImage, tmp_path: Path
) -> None:
    """A full disk (a file size limit fails writes the same way): a clear error, and
    nothing half-written kept, as there is nothing to resume from a local file."""
    archive = exported(registry, small_image, "full/import", tmp_path)
    store = tmp_path / "store"
    limit = max(layer.descriptor.size for layer in small_image.layers) // 2
    failed = osbuilder("cache", "import", "--cache", str(store), str(archive), max_file_size=limit)
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"osbuilder: {store}/ingest/")
    assert failed.stderr.strip().endswith(".partial: cannot write: File too large")
    assert list((store / "ingest").glob("*.partial")) == []


def _second_registry(tmp_path: Path):  # type: ignore[no-untyped-def]

    workdir = tmp_path / "second-registry"
    workdir.mkdir()
    return running_registry(workdir)
