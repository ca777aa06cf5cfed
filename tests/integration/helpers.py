"""Helpers for tests of osbuilder's OCI code against real registries."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from osbuilder.oci.auth import CredentialStore
from osbuilder.oci.imagewriter import ImageSpec, dir_info, file_info, new_layer, write_image
from osbuilder.oci.platform import TargetPlatform, host_target
from osbuilder.oci.pull import Puller, PullResult
from osbuilder.oci.reference import parse_reference
from osbuilder.oci.registry import RegistryClient, RegistryOptions
from osbuilder.oci.store import ContentStore

AMD64 = TargetPlatform("amd64")
ARM64 = TargetPlatform("arm64")
FAST_RETRIES = RegistryOptions(retries=3, backoff=0.01)


def auth_file(tmp_path: Path, host: str, creds: str) -> Path:
    """A containers-auth.json (the format of $REGISTRY_AUTH_FILE) holding `creds` for `host`."""
    path = tmp_path / "auth.json"
    path.write_text(
        json.dumps({"auths": {host: {"auth": base64.b64encode(creds.encode()).decode()}}})
    )
    return path


def client(
    options: RegistryOptions = FAST_RETRIES, credentials: CredentialStore | None = None
) -> RegistryClient:
    return RegistryClient(options, credentials or CredentialStore([]))


def pull(
    store: ContentStore,
    reference: str,
    *,
    registry_client: RegistryClient | None = None,
    target: TargetPlatform = AMD64,
    offline: bool = False,
) -> PullResult:
    with registry_client or client() as used:
        puller = Puller(store, None if offline else used, target)
        return puller.pull(parse_reference(reference))


def blob_files_are_valid(store: ContentStore) -> list[str]:
    """Every file under blobs/ hashes to its name; returns the digests found."""
    digests = []
    for path in sorted(store.blobs.iterdir()):
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        assert actual == path.name, f"{path} holds content of sha256:{actual}"
        digests.append("sha256:" + path.name)
    return digests


def store_image(
    store: ContentStore,
    reference: str,
    files: dict[str, bytes],
    labels: dict[str, str] | None = None,
) -> None:
    """A one-layer image of `files` (a name ending in / is a directory), tagged `reference`
    in `store`, for this machine's architecture."""
    with new_layer(store) as layer:
        for name, data in files.items():
            if name.endswith("/"):
                layer.add(dir_info(name.rstrip("/"), 0o755, 0))
            else:
                layer.add(file_info(name, len(data), 0o644, 0), io.BytesIO(data))
    assert layer.result is not None
    spec = ImageSpec(architecture=host_target().architecture, labels=labels or {})
    store.tag(str(parse_reference(reference)), write_image(store, [layer.result], spec))


def partial_files(store: ContentStore) -> list[Path]:
    return sorted(store.ingest_dir.glob("*.partial"))


def osbuilder(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = False,
    max_file_size: int | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the osbuilder command line, as a user would.

    `max_file_size` (RLIMIT_FSIZE) makes writing past that size fail as a full disk would,
    with EFBIG ("File too large"), without needing a small filesystem.
    """

    def limit_file_size() -> None:
        if max_file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))

    return subprocess.run(
        [sys.executable, "-m", "osbuilder", *args],
        input=input,
        capture_output=True,
        text=True,
        check=check,
        env={
            **os.environ,
            "REGISTRY_AUTH_FILE": "/nonexistent/auth.json",
            "DOCKER_CONFIG": "/nonexistent",
            **(env or {}),
        },
        preexec_fn=limit_file_size if max_file_size is not None else None,
    )


def terminated_when(ready: Callable[[], bool], *args: str) -> tuple[int, str]:
    """Start the osbuilder command line `args`, send it SIGTERM once `ready()` is true
    (it must still be running then), and return its exit status and standard error."""
    command = [sys.executable, "-m", "osbuilder", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        while not ready():
            assert process.poll() is None, "the command ended before it could be stopped"
            time.sleep(0.002)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, stderr
