"""The command line: exit codes, clean one-line errors, JSON output, help, schema."""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest
import yaml

from osbuilder import __version__
from osbuilder.cli import COMMANDS, _parser, main
from osbuilder.commands.cloud import route
from osbuilder.pkg.recipe import load_recipe
from osbuilder.pkg.tag import package_reference

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p) for p in (REPO / "examples").glob("*.yml"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse exits for --help, --version and usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_validate_examples_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", *EXAMPLES)
    assert code == 0, err
    assert out.count(": valid (") == len(EXAMPLES)


def test_validate_invalid_exits_1_with_one_line_per_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(
        tmp_path,
        "bad.yml",
        "services:\n  - name: a\n    image: a\n    nett: host\n  - name: a\n    image: a\n",
    )
    code, out, err = run(capsys, "validate", spec)
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"{spec}:4:5: services[0]: unknown field 'nett' (did you mean 'net'?)",
        f"{spec}:5:11: services[1].name: duplicate service name 'a' (first at {spec}:2:11)",
        f"{spec}: invalid, 2 errors",
    ]
    assert "Traceback" not in err


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "bad.yml", "init: [Bad]\ntrust: {org: [x]}\n")
    code, out, _ = run(capsys, "validate", "--json", spec)
    assert code == 1
    result = json.loads(out)
    assert result["valid"] is False
    assert result["errors"] == [
        {
            "file": spec,
            "line": 1,
            "column": 8,
            "path": "init[0]",
            "severity": "error",
            "message": "image reference 'Bad' has an invalid repository component 'Bad' "
            "(lowercase letters, digits and single '.', '_' or '-' separators)",
        }
    ]
    assert result["warnings"] == []
    code, out, _ = run(capsys, "validate", "--json", *EXAMPLES)
    assert code == 0
    assert json.loads(out) == {"valid": True, "files": EXAMPLES, "errors": [], "warnings": []}


def test_validate_merge_checks_the_files_as_one_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path, "a.yml", "services:\n  - name: getty\n    image: getty\n")
    b = write(tmp_path, "b.yml", "services:\n  - name: getty\n    image: getty\n")
    assert run(capsys, "validate", a, b)[0] == 0
    code, _, err = run(capsys, "validate", "--merge", a, b)
    assert code == 1
    assert f"{b}:2:11: services[1].name: duplicate service name 'getty'" in err


def test_missing_file_is_one_clean_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", "/nonexistent/spec.yml")
    assert code == 1
    assert err == "osbuilder: /nonexistent/spec.yml: no such spec file\n"


def test_a_directory_given_as_spec_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "build", "-o", str(tmp_path / "out"), str(tmp_path))
    assert code == 1
    assert err == f"osbuilder: {tmp_path}: a directory, not a spec file (give its .yml files)\n"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "validate")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys)[0] == 2


NOT_A_FILE_NAME = "is not a file name: no '/', and not empty or starting with '.'"
NOT_IN_THE_ROOT = "is not a file's path in the root filesystem (no '..', not empty)"


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        *[("--name", name, NOT_A_FILE_NAME) for name in ("../elsewhere", "a/b", "", ".hidden")],
        *[("--sbom-output", path, NOT_IN_THE_ROOT) for path in ("../etc/x", "/", "a/../../b")],
    ],
)
def test_an_output_path_leading_elsewhere_is_a_usage_error(
    option: str, value: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "build", "-o", str(tmp_path), option, value, *EXAMPLES[:1])
    assert code == 2
    assert err.splitlines()[-1] == (
        f"osbuilder build: error: argument {option}: {value!r} {problem}"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--mem", "0", "'0': at least 64 MB"),
        ("--mem", "1.5G", "'1.5G': give MB, e.g. 1024, or 2G"),
        ("--mem", "512K", "'512K': give MB, e.g. 1024, or 2G"),
        ("--cpus", "0", "'0': a whole number, at least 1"),
    ],
)
def test_vm_sizes_are_checked_before_qemu_starts(
    option: str, value: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "run", option, value, str(tmp_path / "redis"))
    assert code == 2
    assert err.splitlines()[-1] == f"osbuilder run: error: argument {option}: {problem}"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["build", "--jobs", "0"], "argument --jobs: '0': a whole number, at least 1"),
        (["pull", "--retries", "-1"], "argument --retries: '-1': a whole number, at least 0"),
        (["build", "--offline", "--pull"], "argument --pull: not allowed with argument --offline"),
    ],
)
def test_registry_options_are_checked(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv, "x.yml" if argv[0] == "build" else "redis")
    assert code == 2
    assert err.splitlines()[-1] == f"osbuilder {argv[0]}: error: {problem}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"osbuilder {__version__}"


# (push-openstack is what `push openstack` is parsed as)
@pytest.mark.parametrize("command", [[], *(name.split("-") for name in COMMANDS)])
def test_help_on_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-v", *command, "--help")
    assert code == 0
    assert out.startswith(" ".join(["usage: osbuilder", *command]))


def test_the_command_table_names_the_module_that_registers_each_command() -> None:
    """A command line makes only its own command's parser, found in cli.COMMANDS."""
    everything = _parser()
    for name, register in COMMANDS.items():
        alone = argparse.ArgumentParser()
        register(alone.add_subparsers(), argparse.ArgumentParser(add_help=False))
        assert name in alone._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    listed = everything._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert sorted(listed) == sorted(COMMANDS)
    assert _parser(["--debug", "build", "x.yml"]).parse_args(["build", "x.yml"]).files == ["x.yml"]


def test_a_mistyped_command_is_told_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "biuld", "x.yml")
    assert code == 2
    assert "invalid choice: 'biuld'" in err and "'validate'" in err and "'run'" in err


def test_schema_is_a_json_schema_that_accepts_specs_and_rejects_typos(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in EXAMPLES + sorted(str(p) for p in (REPO / "tests/data/linuxkit").glob("*.yml")):
        data = yaml.safe_load(Path(path).read_text())
        assert list(validator.iter_errors(data)) == [], path
    typo = {"services": [{"name": "a", "image": "a", "capabilites": []}]}
    assert not validator.is_valid(typo)


def test_docs_spec_reference_is_generated_from_the_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "schema", "--format", "markdown")
    assert code == 0
    assert (REPO / "docs/spec.md").read_text() == out, "run `make docs` to regenerate"
    assert "| `capabilities.add` |" in out


def test_a_dry_run_prints_the_merged_spec_and_builds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """LinuxKit's `build --dry-run`: the spec the files make, merged and with its templates
    expanded, as YAML that is itself a valid spec; no store, no output directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    base = write(
        tmp_path, "base.yml", "kernel:\n  image: osbuilder/kernel:1\ninit: [osbuilder/init:1]\n"
    )
    extra = write(
        tmp_path,
        "extra.yml",
        f'init: ["@pkg:{REPO}/pkg/crun"]\nservices:\n  - image: redis:7\n    name: redis\n'
        "    capabilities: [CAP_CHOWN]\n",
    )
    code, out, err = run(capsys, "build", "--dry-run", base, extra)
    assert (code, err) == (0, "")
    crun = package_reference(load_recipe(REPO / "pkg/crun"))
    assert yaml.safe_load(out) == {
        "kernel": {"image": "osbuilder/kernel:1"},
        "init": ["osbuilder/init:1", crun],
        "services": [{"name": "redis", "image": "redis:7", "capabilities": ["CAP_CHOWN"]}],
    }
    assert out.index("name: redis") < out.index("image: redis:7") < out.index("capabilities")
    printed = write(tmp_path, "printed.yml", out)
    assert run(capsys, "validate", printed)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yml", "extra.yml", "printed.yml"]


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    spec = write(tmp_path, "bad.yml", "kernel: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "osbuilder", "validate", spec],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(f"{spec}:2:1: YAML syntax error:")
    assert "Traceback" not in result.stderr


def test_output_read_only_in_part_ends_the_command_quietly() -> None:
    """`osbuilder schema | head -c 100`: the reader goes away before the output ends, and
    the command stops as other tools do, without an internal error."""
    reader, writer = os.pipe()
    # A pipe of one page: the schema (~47 KB) cannot be all in it when the reader leaves.
    fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, 4096)
    process = subprocess.Popen(
        [sys.executable, "-m", "osbuilder", "schema"], stdout=writer, stderr=subprocess.PIPE
    )
    os.close(writer)
    with os.fdopen(reader, "rb") as output:
        assert output.read(100).startswith(b"{")
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (128 + signal.SIGPIPE, b"")


def test_a_spec_on_standard_input_is_validated_as_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-` is standard input, as for LinuxKit; its errors are located at <stdin>."""
    text = "kernel:\r\n  image: osbuilder/kernel\r\n  bogus: 1\r\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, _, err = run(capsys, "validate", "-")
    assert code == 1
    assert err.splitlines() == ["<stdin>:3:3: kernel: unknown field 'bogus'", "-: invalid, 1 error"]
    code, _, err = run(capsys, "validate", "-", "-")
    assert (code, err) == (1, "osbuilder: - (standard input) can be given only once\n")


def test_the_command_line_runs_from_a_thread_too(capsys: pytest.CaptureFixture[str]) -> None:
    """A tool embedding osbuilder may call main() off the main thread, where Python allows
    no signal handler to be set (SIGTERM's is then left alone)."""
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(main(["validate", EXAMPLES[0]])))
    worker.start()
    worker.join()
    assert codes == [0]


def test_push_openstack_is_its_own_command_and_push_ref_stays() -> None:
    assert route(["push", "openstack", "--cloud", "c", "out/x.qcow2"]) == [
        "push-openstack",
        "--cloud",
        "c",
        "out/x.qcow2",
    ]
    assert route(["--debug", "push", "openstack", "x.iso"]) == [
        "--debug",
        "push-openstack",
        "x.iso",
    ]
    for unchanged in (
        ["push", "registry.example/openstack:1"],
        ["push", "--to", "openstack", "img:1"],
        ["build", "openstack.yml"],
        [],
    ):
        assert route(unchanged) == unchanged


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "0"], "argument --timeout: '0': give a number of seconds above 0"),
        (["--timeout", "soon"], "argument --timeout: 'soon': give a number of seconds above 0"),
        (["--property", "novalue"], "argument --property: 'novalue': give KEY=VALUE"),
        (["--visibility", "everyone"], "argument --visibility: invalid choice: 'everyone'"),
    ],
)
def test_push_openstack_options_are_checked(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["push", "openstack", *args, "image.qcow2"])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_run_takes_user_data_from_one_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "run", "--data", "x", "--data-file", "f", str(tmp_path / "sys"))
    assert code == 2 and "not allowed with argument --data" in err


def test_run_prints_json_only_when_detached(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """In the foreground stdout is the console: no place for JSON."""
    code, out, err = run(capsys, "run", "--json", "--timeline", str(tmp_path / "sys"))
    assert code == 1 and out == ""
    assert err == "osbuilder: --json goes with --detach\n"


def test_a_bug_exits_70_and_asks_for_a_report(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Exit 1 is the user's mistake; a bug in osbuilder is EX_SOFTWARE, and says so."""

    def broken(path: object, *args: object, **kwargs: object) -> None:
        raise KeyError("no such thing")

    monkeypatch.setattr("osbuilder.spec.check_specs", broken)
    spec = write(tmp_path, "ok.yml", "init: [busybox]\n")
    code, _, err = run(capsys, "validate", spec)
    assert code == 70
    assert err == (
        "osbuilder: internal error: KeyError: 'no such thing' (this is a bug: rerun with "
        "--debug for the traceback, and report it)\n"
    )
