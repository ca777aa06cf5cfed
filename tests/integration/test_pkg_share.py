"""`pkg build --cache-from`: packages shared between machines through a real registry.

Two "machines" are two content stores; the registry is Debian's docker-registry on
loopback. What one builds and pushes, the other pulls instead of building: same digest,
no mmdebstrap run (the JSON's `source`), signatures along, judged by the policy.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from osbuilder.oci.reference import parse_reference
from osbuilder.oci.store import ContentStore
from osbuilder.trust.keys import generate_key_pair, key_files
from osbuilder.trust.stored import sigstore_name
from tests.conftest import REPO
from tests.integration.helpers import osbuilder
from tests.integration.images import skopeo
from tests.integration.registry import Registry, running_registry

pytestmark = pytest.mark.integration

TINY = REPO / "tests/data/pkg/tiny"
KEY_ENV = {"OSBUILDER_KEY_PASSWORD": ""}


def recipe_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "recipes/tiny"
    shutil.copytree(TINY, directory)
    return directory


def pkg_build(store: Path, recipe: Path, *options: str) -> list[dict[str, Any]]:
    result = osbuilder(
        "pkg", "build", "--json", "--cache", str(store), *options, str(recipe), env=KEY_ENV
    )
    assert result.returncode == 0, result.stderr
    built = json.loads(result.stdout)
    assert isinstance(built, list)
    return built


def policy_requiring(tmp_path: Path, scope: str, public: Path) -> Path:
    policy = tmp_path / "policy.json"
    requirement = {"type": "sigstoreSigned", "keyPath": str(public)}
    document = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {"docker": {scope: [requirement]}},
    }
    policy.write_text(json.dumps(document))
    return policy


def test_what_one_machine_pushes_another_pulls_instead_of_building(
    tmp_path: Path, registry: Registry
) -> None:
    recipe = recipe_copy(tmp_path)
    namespace = f"{registry.host}/pkgs"
    generate_key_pair(tmp_path / "builder", b"")
    keys = key_files(tmp_path / "builder")
    tag = osbuilder("pkg", "show-tag", str(recipe), check=True).stdout.strip()
    local = f"docker.io/{tag}"
    shared = f"{namespace}/tiny:{tag.rsplit(':', 1)[1]}"

    # Machine A: not in the registry yet, so built, then pushed (signed) to the namespace.
    [a] = pkg_build(
        tmp_path / "a",
        recipe,
        "--cache-from",
        namespace,
        "--push",
        "--sign-key",
        str(keys.private),
    )
    assert a["source"] == "built" and a["built"] is True
    assert a["reference"] == local and a["pushedTo"] == shared and a["pulledFrom"] is None
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{shared}").stdout)
    assert inspected["Digest"] == a["digest"]

    # Machine B: pulled, not built; same digest, under the name specs use; its signature
    # came along and satisfies a policy that requires it for the shared name.
    policy = policy_requiring(tmp_path, namespace, keys.public)
    result = osbuilder(
        "pkg",
        "build",
        "--cache",
        str(tmp_path / "b"),
        "--cache-from",
        namespace,
        "--policy",
        str(policy),
        "-v",
        str(recipe),
    )
    assert result.returncode == 0, result.stderr
    assert f"{local} (pulled from {shared}, {a['digest']})" in result.stdout
    assert "mmdebstrap" not in result.stderr
    store = ContentStore(tmp_path / "b")
    named = store.lookup(local)
    assert named is not None and named.digest == a["digest"]
    assert store.lookup(sigstore_name(parse_reference(local), a["digest"])) is not None

    # Machine B again: its store has it; the registry is not asked.
    [again] = pkg_build(tmp_path / "b", recipe, "--cache-from", "127.0.0.1:9/nowhere")
    assert again["source"] == "store" and again["digest"] == a["digest"]

    # A policy whose key did not sign it: refused in one line, nothing named.
    generate_key_pair(tmp_path / "other", b"")
    other = policy_requiring(tmp_path, namespace, key_files(tmp_path / "other").public)
    refused = osbuilder(
        "pkg",
        "build",
        "--cache",
        str(tmp_path / "c"),
        "--cache-from",
        namespace,
        "--policy",
        str(other),
        str(recipe),
    )
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert "no sigstore signature satisfies the policy" in line, line
    assert ContentStore(tmp_path / "c").lookup(local) is None


def test_a_changed_recipe_is_a_new_tag_and_is_built(tmp_path: Path, registry: Registry) -> None:
    recipe = recipe_copy(tmp_path)
    namespace = f"{registry.host}/pkgs"
    [first] = pkg_build(tmp_path / "a", recipe, "--cache-from", namespace, "--push")
    with (recipe / "build.yml").open("a") as stream:
        stream.write("# changed\n")
    [changed] = pkg_build(tmp_path / "b", recipe, "--cache-from", namespace)
    assert changed["source"] == "built" and changed["reference"] != first["reference"]
    assert changed["pulledFrom"] is None and changed["pushedTo"] is None


def test_the_same_image_pushed_meanwhile_is_not_pushed_again(
    tmp_path: Path, registry: Registry
) -> None:
    """Two machines that build one recipe at once: the second finds the first's push, of
    the same digest (builds are reproducible), and leaves it (and its signatures) be."""
    recipe = recipe_copy(tmp_path)
    namespace = f"{registry.host}/pkgs"
    [first] = pkg_build(tmp_path / "a", recipe, "--cache-from", namespace, "--push")
    assert first["alreadyShared"] is False
    # --force: built although the registry has it, as by a machine that checked before
    [second] = pkg_build(tmp_path / "b", recipe, "--cache-from", namespace, "--push", "--force")
    assert second["source"] == "built" and second["digest"] == first["digest"]
    assert second["alreadyShared"] is True and second["pushedTo"] is None


def test_a_pull_through_the_cache_keeps_the_other_architectures(
    tmp_path: Path, registry: Registry
) -> None:
    """Machine A pushes amd64; machine B builds arm64 with --push: what the tag names then
    is an index of both (B pulled amd64 first), and machine C pulls either."""
    recipe = recipe_copy(tmp_path)
    namespace = f"{registry.host}/pkgs"
    [a] = pkg_build(tmp_path / "a", recipe, "--cache-from", namespace, "--push")
    [b] = pkg_build(tmp_path / "b", recipe, "--cache-from", namespace, "--push", "--arch", "arm64")
    assert b["source"] == "built"
    shared = b["pushedTo"]
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{shared}").stdout)
    arches = sorted(m["platform"]["architecture"] for m in raw["manifests"])
    assert arches == ["amd64", "arm64"]
    assert a["digest"] in [m["digest"] for m in raw["manifests"]]
    [c] = pkg_build(tmp_path / "c", recipe, "--cache-from", namespace, "--arch", "arm64")
    assert c["source"] == "pulled" and c["digest"] == b["digest"]


def test_a_replica_is_read_first_and_the_primary_for_what_it_lacks(
    tmp_path: Path, registry: Registry
) -> None:
    """`--registry-mirror PRIMARY=REPLICA`: a tag the replica lacks yet (replication lag)
    is pulled from the primary; once replicated, the replica serves it with the primary
    down."""
    recipe = recipe_copy(tmp_path)
    namespace = f"{registry.host}/pkgs"
    [a] = pkg_build(tmp_path / "a", recipe, "--cache-from", namespace, "--push")
    (tmp_path / "replica").mkdir()
    with running_registry(tmp_path / "replica") as replica:
        mirror = ("--registry-mirror", f"{registry.host}={replica.url}", "--retries", "0")
        [lagging] = pkg_build(tmp_path / "b", recipe, "--cache-from", namespace, *mirror)
        assert lagging["source"] == "pulled" and lagging["digest"] == a["digest"]

        repository = a["pushedTo"].split("/", 1)[1]
        skopeo(
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{a['pushedTo']}",
            f"docker://{replica.host}/{repository}",
        )
        shutil.rmtree(registry.root)  # the primary has lost everything: only the replica has it
        [replicated] = pkg_build(tmp_path / "c", recipe, "--cache-from", namespace, *mirror)
        assert replicated["source"] == "pulled" and replicated["digest"] == a["digest"]


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_cache_builds_or_refuses_to_push(tmp_path: Path) -> None:
    """A cache that does not answer is a cache miss with a warning (a build cache does
    not stop a build); with --push, the push could not succeed: one line, nothing built."""
    recipe = recipe_copy(tmp_path)
    namespace = f"127.0.0.1:{unused_port()}/pkgs"
    options = ("--cache-from", namespace, "--retries", "0")
    pushed = osbuilder(
        "pkg", "build", "--cache", str(tmp_path / "a"), *options, "--push", str(recipe)
    )
    assert pushed.returncode == 3
    [line] = pushed.stderr.strip().splitlines()
    assert line.startswith(f"osbuilder: package cache {namespace}: cannot read "), line
    assert not (tmp_path / "a").exists() or ContentStore(tmp_path / "a").references() == []

    built = osbuilder("pkg", "build", "--cache", str(tmp_path / "b"), *options, str(recipe))
    assert built.returncode == 0, built.stderr
    assert "building without the cache" in built.stderr
    assert "(built, sha256:" in built.stdout


def test_bad_namespace_is_one_line(tmp_path: Path) -> None:
    result = osbuilder(
        "pkg", "build", "--cache", str(tmp_path), "--cache-from", "Bad Name", str(TINY)
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("osbuilder: --cache-from 'Bad Name': not a registry namespace")
