"""Values LinuxKit accepts that osbuilder once refused: a `root` namespace, file modes of any
octal length, the container names runc takes as container ids."""

from __future__ import annotations

import textwrap

import pytest

from osbuilder.spec import CONTAINER_SECTIONS, check_sources


def spec_errors(text: str) -> list[str]:
    loaded, diagnostics = check_sources([("t.yml", textwrap.dedent(text))])
    errors = [d.message for d in diagnostics if d.severity == "error"]
    assert (loaded is None) == bool(errors)
    return errors


@pytest.mark.parametrize("kind", ["net", "pid", "ipc", "uts", "userns"])
def test_root_is_a_namespace_value(kind: str) -> None:
    assert spec_errors(f"services:\n  - name: a\n    image: a\n    {kind}: root\n") == []


@pytest.mark.parametrize("mode", ["0", "7", "44", "644", "0644", "4755", "00644", "07777"])
def test_a_mode_has_any_number_of_octal_digits(mode: str) -> None:
    # Go's strconv.ParseInt(mode, 8, 32), as LinuxKit's build.go reads it.
    assert spec_errors(f"files:\n  - path: etc/a\n    contents: x\n    mode: '{mode}'\n") == []


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("0o644", "mode must be an octal string such as '0644', got '0o644'"),
        ("", "mode must be an octal string such as '0644', got ''"),
        ("-644", "mode must be an octal string such as '0644', got '-644'"),
        ("0648", "mode must be an octal string such as '0644', got '0648'"),
        ("10000", "mode '10000' has bits above 07777 (permissions, setuid, setgid, sticky)"),
    ],
)
def test_a_mode_that_is_not_octal_permissions_is_refused(mode: str, message: str) -> None:
    text = f"files:\n  - path: etc/a\n    contents: x\n    mode: '{mode}'\n"
    assert spec_errors(text) == [message]


def test_a_device_mode_follows_the_same_rule() -> None:
    text = "onboot:\n  - name: a\n    image: a\n    devices:\n"
    text += "      - {path: /dev/null, type: c, major: 1, minor: 3, mode: '666'}\n"
    assert spec_errors(text) == []


@pytest.mark.parametrize("section", CONTAINER_SECTIONS)
@pytest.mark.parametrize("name", ["a", "_x", "a+b", "a,b", "a.b-c", "1", ".x", "x" * 200])
def test_names_runc_takes_as_container_ids_are_accepted(section: str, name: str) -> None:
    assert spec_errors(f"{section}:\n  - name: '{name}'\n    image: a\n") == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "-a", "a b", "a:b", "é"])
def test_names_runc_refuses_are_refused(name: str) -> None:
    [error] = spec_errors(f"onboot:\n  - name: '{name}'\n    image: a\n")
    assert error.startswith("container name must use only letters, digits")
