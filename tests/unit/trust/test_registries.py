"""registries.d(5): merging a directory's files and finding an image's lookaside, as
containers/image's docker/registries_d.go does."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.errors import UserError
from osbuilder.oci.reference import parse_reference
from osbuilder.trust.registries import (
    ROOT_LOOKASIDE,
    SYSTEM_REGISTRIES_D,
    Lookaside,
    RegistriesConfig,
    RegistriesError,
    default_registries_dir,
    load_registries_d,
    lookaside_for,
    signature_url,
    uses_sigstore_attachments,
)

DIGEST = "sha256:" + "ab" * 32

# The man page's "Developing and Signing Containers" example, plus a default and a wildcard.
EXAMPLE = """\
docker:
    registry.example.com:
        lookaside: https://registry-lookaside.example.com
    registry.example.com/mydepartment:
        lookaside: https://lookaside.mydepartment.example.com
        lookaside-staging: file:///mnt/mydepartment/lookaside-staging
    registry.example.com/mydepartment/myproject:mybranch:
        lookaside: http://localhost:4242/lookaside
        lookaside-staging: file:///home/useraccount/webroot/lookaside
    registry.example.com/attachments-only:
        use-sigstore-attachments: true
    "*.mirror.example":
        sigstore: https://old-name.example/sigs
        sigstore-staging: file:///old-staging
"""
DEFAULT = """\
default-docker:
    lookaside-staging: file:///mnt/company/common-lookaside-staging
    use-sigstore-attachments: yes
"""


@pytest.fixture
def config(tmp_path: Path) -> RegistriesConfig:
    (tmp_path / "example.yaml").write_text(EXAMPLE)
    (tmp_path / "default.yaml").write_text(DEFAULT)
    (tmp_path / "ignored.yml").write_text("not: [valid")  # only *.yaml files are read
    return load_registries_d(tmp_path)


@pytest.mark.parametrize(
    ("image", "read_url", "write_url"),
    [
        (  # the host section
            "registry.example.com/other/app:1",
            "https://registry-lookaside.example.com/other/app",
            "https://registry-lookaside.example.com/other/app",
        ),
        (  # the namespace section, with staging for writes
            "registry.example.com/mydepartment/tool:1",
            "https://lookaside.mydepartment.example.com/mydepartment/tool",
            "file:///mnt/mydepartment/lookaside-staging/mydepartment/tool",
        ),
        (  # the exact-tag section
            "registry.example.com/mydepartment/myproject:mybranch",
            "http://localhost:4242/lookaside/mydepartment/myproject",
            "file:///home/useraccount/webroot/lookaside/mydepartment/myproject",
        ),
        (  # another tag of that repository: the namespace section
            "registry.example.com/mydepartment/myproject:main",
            "https://lookaside.mydepartment.example.com/mydepartment/myproject",
            "file:///mnt/mydepartment/lookaside-staging/mydepartment/myproject",
        ),
        (  # a section without a lookaside passes to the next: the host's
            "registry.example.com/attachments-only:1",
            "https://registry-lookaside.example.com/attachments-only",
            "https://registry-lookaside.example.com/attachments-only",
        ),
        (  # the old key names, and a wildcard scope
            "a.mirror.example/x/y:1",
            "https://old-name.example/sigs/x/y",
            "file:///old-staging/x/y",
        ),
        (  # a port's host is not its parent scope: default-docker writes, built-in reads
            "registry.example.com:5000/app:1",
            f"{ROOT_LOOKASIDE}/app",
            "file:///mnt/company/common-lookaside-staging/app",
        ),
        (  # docker.io: the path is the expanded repository
            "busybox",
            f"{ROOT_LOOKASIDE}/library/busybox",
            "file:///mnt/company/common-lookaside-staging/library/busybox",
        ),
    ],
)
def test_lookaside_for_the_most_specific_section(
    config: RegistriesConfig, image: str, read_url: str, write_url: str
) -> None:
    assert lookaside_for(config, parse_reference(image), euid=0) == Lookaside(read_url, write_url)


def test_the_built_in_lookaside_of_a_user_is_under_home(tmp_path: Path) -> None:
    lookaside = lookaside_for(
        RegistriesConfig(), parse_reference("quay.io/a/b"), home=tmp_path, euid=1000
    )
    expected = f"file://{tmp_path}/.local/share/containers/sigstore/a/b"
    assert lookaside == Lookaside(expected, expected)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("registry.example.com/attachments-only:1", True),
        ("registry.example.com/mydepartment/tool", True),  # no section sets it: default-docker
        ("quay.io/x/y", True),
    ],
)
def test_use_sigstore_attachments(config: RegistriesConfig, image: str, expected: bool) -> None:
    assert uses_sigstore_attachments(config, parse_reference(image)) is expected


def test_sigstore_attachments_are_off_unless_configured(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("docker:\n  quay.io/x:\n    use-sigstore-attachments: false\n")
    config = load_registries_d(tmp_path)
    assert not uses_sigstore_attachments(config, parse_reference("quay.io/x/y"))
    assert not uses_sigstore_attachments(config, parse_reference("ghcr.io/x/y"))


def test_signature_url_layout() -> None:
    base = "https://lookaside.example.com/sigs/ns/repo"
    assert signature_url(base, DIGEST, 1) == (
        f"https://lookaside.example.com/sigs/ns/repo@sha256={'ab' * 32}/signature-1"
    )
    assert signature_url("file:///var/lib/sigs/r", DIGEST, 12).endswith("/signature-12")
    # a query string (a pre-signed URL) stays at the end
    assert signature_url("https://s.example/x?token=1", DIGEST, 2) == (
        f"https://s.example/x@sha256={'ab' * 32}/signature-2?token=1"
    )


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "sha256:" + "AB" * 32, "md5:" + "ab" * 16, "sha256:../" + "a" * 61]
)
def test_signature_url_refuses_malformed_digests(digest: str) -> None:
    with pytest.raises(UserError):
        signature_url("file:///x", digest, 1)


def test_signature_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        signature_url("file:///x", DIGEST, 0)


def test_a_missing_directory_is_an_empty_configuration(tmp_path: Path) -> None:
    assert load_registries_d(tmp_path / "absent") == RegistriesConfig()


def test_default_directory_prefers_the_users(tmp_path: Path) -> None:
    assert default_registries_dir(tmp_path) == SYSTEM_REGISTRIES_D
    user_dir = tmp_path / ".config/containers/registries.d"
    user_dir.mkdir(parents=True)
    (user_dir / "a.yaml").write_text("default-docker:\n  lookaside: https://user.example\n")
    assert default_registries_dir(tmp_path) == user_dir
    config = load_registries_d(home=tmp_path)
    assert lookaside_for(config, parse_reference("x/y"), euid=0).read_url == (
        "https://user.example/x/y"
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"a.yaml": "default-docker: {}\n", "b.yaml": "default-docker: {}\n"},
            r'b\.yaml: "default-docker" is already defined in .*a\.yaml',
        ),
        (
            {"a.yaml": "docker:\n  quay.io: {}\n", "b.yaml": "docker:\n  quay.io:\n"},
            r"b\.yaml: \"docker\" scope 'quay.io' is already defined in .*a\.yaml",
        ),
        ({"a.yaml": "docker:\n  quay.io: {}\n  quay.io: {}\n"}, r"a\.yaml: not valid YAML: .*dup"),
        ({"a.yaml": "docker: [\n"}, r"a\.yaml: not valid YAML"),
        ({"a.yaml": "- a\n"}, r"a\.yaml: expected a mapping"),
        ({"a.yaml": "docker: [a]\n"}, r"a\.yaml: docker: expected a mapping of scopes"),
        (
            {"a.yaml": "docker:\n  quay.io: 1\n"},
            r"a\.yaml: docker\['quay.io'\]: expected a mapping",
        ),
        (
            {"a.yaml": "docker:\n  quay.io:\n    lookaside: ftp://x\n"},
            r"a\.yaml: docker\['quay.io'\]\.lookaside: 'ftp://x' is not a file://",
        ),
        (
            {"a.yaml": "default-docker:\n  use-sigstore-attachments: maybe\n"},
            r"a\.yaml: default-docker\.use-sigstore-attachments: ",
        ),
    ],
)
def test_invalid_configurations_name_the_file(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(RegistriesError, match=message) as caught:
        load_registries_d(tmp_path)
    assert "\n" not in str(caught.value)


def test_unknown_keys_are_ignored_as_containers_image_does(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "other-tool: 1\ndocker:\n  quay.io:\n    lookaside: https://q.example\n    future: 2\n"
    )
    config = load_registries_d(tmp_path)
    assert lookaside_for(config, parse_reference("quay.io/a/b"), euid=0).read_url == (
        "https://q.example/a/b"
    )


def test_an_empty_file_is_no_configuration(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("# nothing yet\n")
    assert load_registries_d(tmp_path) == RegistriesConfig()
