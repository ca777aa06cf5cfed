"""Registry credentials (docker config, auth files, helpers) and auth challenges."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.oci.auth import (
    Credentials,
    CredentialStore,
    RegistryAuth,
    parse_challenge,
    request_scope,
)


def config(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auths_entries_by_host_and_docker_hub_aliases(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        "config.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
                "127.0.0.1:5000": {"auth": b64("local:se:cret")},
                "http://registry.example.com/v2/": {"auth": b64("ex:pw")},
            }
        },
    )
    store = CredentialStore([path])
    assert store.get("docker.io") == Credentials("hubuser", "hubpass")
    assert store.get("127.0.0.1:5000") == Credentials("local", "se:cret")
    assert store.get("registry.example.com") == Credentials("ex", "pw")
    assert store.get("ghcr.io") is None


def test_registry_auth_file_comes_first(tmp_path: Path) -> None:
    first = config(tmp_path, "auth.json", {"auths": {"r.io": {"auth": b64("a:1")}}})
    second = config(tmp_path, "config.json", {"auths": {"r.io": {"auth": b64("b:2")}}})
    assert CredentialStore([first, second]).get("r.io") == Credentials("a", "1")


def test_default_files_read_registry_auth_file_and_docker_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = config(tmp_path, "auth.json", {"auths": {"one.io": {"auth": b64("a:1")}}})
    (tmp_path / "docker").mkdir()
    config(tmp_path / "docker", "config.json", {"auths": {"two.io": {"auth": b64("b:2")}}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    store = CredentialStore()
    assert store.get("one.io") == Credentials("a", "1")
    assert store.get("two.io") == Credentials("b", "2")


def write_helper(tmp_path: Path, name: str, script: str) -> None:
    helper = tmp_path / "bin" / f"docker-credential-{name}"
    helper.parent.mkdir(exist_ok=True)
    helper.write_text("#!/bin/sh\n" + script)
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_helper(
        tmp_path,
        "pass",
        'read host; echo "{\\"ServerURL\\":\\"$host\\",'
        '\\"Username\\":\\"u-$host\\",\\"Secret\\":\\"s3cret\\"}"\n',
    )
    write_helper(
        tmp_path,
        "store",
        'read host; case "$host" in '
        'https://index.docker.io/v1/) echo \'{"Username":"<token>","Secret":"tok"}\';; '
        '*) echo "credentials not found in native keychain"; exit 1;; esac\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    path = config(
        tmp_path,
        "config.json",
        {
            "credHelpers": {"ghcr.io": "pass"},
            "credsStore": "store",
        },
    )
    store = CredentialStore([path])
    assert store.get("ghcr.io") == Credentials("u-ghcr.io", "s3cret")
    assert store.get("docker.io") == Credentials("", "", identity_token="tok")
    assert store.get("quay.io") is None


def test_secrets_never_show(tmp_path: Path) -> None:
    creds = Credentials("user", "hunter2")
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds)
    path = config(tmp_path, "config.json", {"auths": {"r.io": {"auth": "not base64!"}}})
    with pytest.raises(UserError) as error:
        CredentialStore([path]).get("r.io")
    assert "not base64!" not in str(error.value)


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="cannot read registry credentials"):
        CredentialStore([path]).get("r.io")


def test_challenges() -> None:
    bearer = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/redis:pull"'
    )
    assert bearer is not None and bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/redis:pull",
    }
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic"


def test_request_scopes() -> None:
    get = ("GET", "http://r/v2/library/redis/manifests/7")
    put = ("PUT", "http://r/v2/a/b/c/manifests/v1")
    mount = ("POST", "http://r/v2/dst/blobs/uploads/?mount=sha256:x&from=src")
    assert request_scope(*get) == ["repository:library/redis:pull"]
    assert request_scope(*put) == ["repository:a/b/c:pull,push"]
    assert request_scope(*mount, ("repository:src:pull",)) == [
        "repository:dst:pull,push",
        "repository:src:pull",
    ]
    assert request_scope("GET", "http://r/v2/") == []
    # A cross-repository mount asks for pull on the source too; other requests do not.
    assert RegistryAuth.scope_key(*mount) == ("repository:dst:pull,push", "repository:src:pull")
    assert RegistryAuth.scope_key(*get) == ("repository:library/redis:pull",)
