"""Spec files given as http(s) URLs (LinuxKit takes them too), from a real HTTP server on
loopback: validated and merged like files, located at URL:LINE:COL, one line when they
cannot be fetched."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from osbuilder.cli import main
from osbuilder.spec.remote import MAX_SPEC_BYTES, url_stem

SPEC = """\
kernel:
  image: osbuilder/kernel:1
init: [osbuilder/init:1]
"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A directory and the http:// URL it is served at."""
    for proxy in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    directory = tmp_path / "www"
    directory.mkdir()
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield directory, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_spec_at_a_url_is_validated_and_merged_like_a_file(
    served: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, base = served
    (directory / "base.yml").write_text(SPEC)
    (directory / "broken.yml").write_text(SPEC + "onboot:\n  - name: a\n    imag: x\n")
    local = tmp_path / "redis.yml"
    local.write_text("services:\n  - name: redis\n    image: redis:7\n")

    assert run(capsys, "validate", f"{base}/base.yml") == (
        0,
        f"{base}/base.yml: valid (1 init)\n",
        "",
    )
    code, out, err = run(capsys, "validate", f"{base}/broken.yml")
    assert code == 1
    assert err.splitlines()[:2] == [
        f"{base}/broken.yml:5:5: onboot[0]: missing required field 'image'",
        f"{base}/broken.yml:6:5: onboot[0]: unknown field 'imag' (did you mean 'image'?)",
    ]

    code, out, err = run(capsys, "build", "--dry-run", f"{base}/base.yml", str(local))
    assert (code, err) == (0, "")
    assert yaml.safe_load(out) == {
        "kernel": {"image": "osbuilder/kernel:1"},
        "init": ["osbuilder/init:1"],
        "services": [{"name": "redis", "image": "redis:7"}],
    }


def test_a_url_that_gives_no_spec_is_one_line(
    served: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    directory, base = served
    (directory / "huge.yml").write_bytes(b"#" * (MAX_SPEC_BYTES + 1))
    (directory / "templated.yml").write_text('init: ["@pkg:../pkg/init"]\n')
    closed = base.rsplit(":", 1)[0] + ":9"  # the discard port: nothing listens there
    cases = [
        (
            f"{base}/missing.yml",
            f"{base}/missing.yml: cannot fetch the spec: HTTP 404 File not found",
        ),
        (f"{base}/huge.yml", f"{base}/huge.yml: more than 4 MiB: not a spec"),
        (f"{closed}/x.yml", f"{closed}/x.yml: cannot fetch the spec: "),
    ]
    for url, message in cases:
        code, out, err = run(capsys, "validate", url)
        assert (code, out) == (1, "")
        assert err.startswith(f"osbuilder: {message}") and err.count("\n") == 1, err
    code, _, err = run(capsys, "validate", f"{base}/templated.yml")
    assert code == 1
    assert err.splitlines()[0] == (
        f"{base}/templated.yml:1:8: init[0]: @pkg:../pkg/init: a @pkg: path is relative to "
        "its spec file, and this spec was fetched from a URL; give the file itself"
    )


def test_the_outputs_are_named_after_the_urls_file() -> None:
    assert url_stem("https://example.org/specs/redis.yml?raw=1") == "redis"
    assert url_stem("https://example.org/specs/sshd") == "sshd"
    assert url_stem("https://example.org/") == ""  # (then: "system", as for standard input)
