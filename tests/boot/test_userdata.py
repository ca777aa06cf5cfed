"""`osbuilder run --data`: the metadata package puts the user data in /run/config, as a
file tree when it is LinuxKit's JSON, and sets the hostname it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.boot.conftest import build_system, run_until_poweroff, spec_text
from tests.conftest import Packages

pytestmark = pytest.mark.boot

SPEC = """
kernel:
  image: {kernel}
  cmdline: "console=ttyS0"
init: [{init}, {crun}]
onboot:
  - name: metadata
    image: {metadata}
services:
  - name: report
    image: {getty}
    uts: host
    command:
      - /bin/busybox
      - sh
      - -c
      - >-
        cd /run/config;
        echo "provider=$(cat provider) name=$(uname -n)";
        echo "key=$(cat ssh/authorized_keys) modes=$(stat -c %a ssh ssh/authorized_keys | xargs)";
        echo "userdata=$(cat userdata)";
        /usr/bin/osbuilder-ctl poweroff
"""

TREE = {
    "hostname": {"content": "from-user-data"},
    "ssh": {
        "perm": "0700",
        "entries": {"authorized_keys": {"perm": "0600", "content": "ssh-ed25519 AAAA me@host"}},
    },
}


@pytest.fixture(scope="module")
def system(packages: Packages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("userdata")
    spec = work / "userdata.yml"
    spec.write_text(spec_text(packages, SPEC))
    return build_system(packages, spec, work / "out")


def test_json_user_data_becomes_files_and_the_hostname(system: Path, tmp_path: Path) -> None:
    console = run_until_poweroff(system, tmp_path / "state", "--data", json.dumps(TREE))
    assert "metadata: user data from /dev/vda: " in console
    assert "provider=cdrom name=from-user-data" in console
    assert "key=ssh-ed25519 AAAA me@host modes=700 600" in console
    assert f"userdata={json.dumps(TREE)}" in console
    assert (tmp_path / "state/data.iso").is_file()


def test_a_bad_tree_is_named_and_no_data_is_no_error(system: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"../escape": {"content": "x"}}))
    console = run_until_poweroff(system, tmp_path / "bad", "--data-file", str(data))
    assert "../escape: not a file name" in console
    assert "*** onboot metadata FAILED: exit code 1 ***" in console
    assert not any("escape" in line for line in console.splitlines() if "key=" in line)

    console = run_until_poweroff(system, tmp_path / "none")
    assert "metadata: no user data: no cidata volume" in console
    assert "onboot metadata: exit code 0" in console
