"""Generated bundles run by the real runc: what the container sees is what the spec says.

Each bundle is a busybox root filesystem with the config.json that
runtime_config makes from a spec entry, an image config and label defaults;
`runc run` prints the process's capability sets, ids, limits and namespaces.
Needs root, runc and a static /bin/busybox (Debian: runc, busybox-static).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from osbuilder.assemble.runtime_config import (
    LABEL,
    allocate_ids,
    encode,
    load_label,
    runtime_config,
)
from osbuilder.oci.model import ImageConfig, RuntimeConfig
from osbuilder.spec.capabilities import KNOWN_CAPABILITIES
from osbuilder.spec.model import Container, Spec
from osbuilder.spec.validation import parse

BUSYBOX = Path("/bin/busybox")
APPLETS = ("grep", "id", "hostname", "touch", "ls", "tr")
REPORT = (
    "grep Cap /proc/self/status; "
    'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; '
    'echo "cwd=$(pwd) nofile=$(ulimit -n)/$(ulimit -Hn) env=$FROM"; '
    'echo "hostname=$(hostname) net=$(ls /sys/class/net | tr "\\n" " ")"; '
    "touch /probe 2>/dev/null && echo root=rw || echo root=ro; "
    "grep -q ' /run tmpfs ' /proc/mounts && echo run=tmpfs || echo run=none"
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root"),
]

SPEC = parse(
    Spec,
    {
        "onboot": [
            {
                "name": "first",
                "image": "example/plain:1",
                "command": ["/bin/sh", "-c", REPORT],
                "capabilities": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"],
                "readonly": True,
                "net": "none",
                "uts": "new",
                "hostname": "box",
                "tmpfs": ["/run:size=1m"],
            }
        ],
        "services": [
            {
                "name": "app",
                "image": "example/app:1",
                "uid": "app",
                "gid": "first",
                "additionalGids": [7],
                "capabilities.add": ["CAP_CHOWN"],
                "ambient": ["CAP_NET_BIND_SERVICE"],
                "rlimits": ["nofile,1000,2000"],
                "restart": "never",
            }
        ],
    },
)

IMAGES = {
    "example/plain:1": ImageConfig("amd64", "linux", [], config=RuntimeConfig(env=["PATH=/bin"])),
    "example/app:1": ImageConfig(
        "amd64",
        "linux",
        [],
        config=RuntimeConfig(
            entrypoint=["/bin/sh", "-c"],
            cmd=[REPORT],
            env=["PATH=/bin", "FROM=image"],
            working_dir="/",
            labels={
                LABEL: json.dumps(
                    {
                        "capabilities": ["CAP_KILL"],
                        "cwd": "/srv",
                        "env": ["PATH=/bin", "FROM=label"],
                        "noNewPrivileges": True,
                    }
                )
            },
        ),
    ),
}


@pytest.fixture(scope="module")
def runc() -> str:
    found = shutil.which("runc")
    if found is None or not BUSYBOX.is_file():
        pytest.fail("needs runc and a static /bin/busybox: apt-get install runc busybox-static")
    return found


def mask(capabilities: list[str]) -> str:
    """A capability set as /proc/PID/status shows it."""
    bits = sum(1 << KNOWN_CAPABILITIES.index(cap) for cap in capabilities)
    return f"{bits:016x}"


def run(runc: str, directory: Path, entry: Container) -> dict[str, str]:
    """Write the bundle, `runc run` it, and return its report as a dict."""
    image = IMAGES[entry.image]
    config, runtime = runtime_config(
        entry, image, load_label(image, entry.image), allocate_ids(SPEC)
    )
    bundle = directory / entry.name
    rootfs = bundle / "rootfs"
    for name in ("bin", "srv"):
        (rootfs / name).mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    for applet in ("sh", *APPLETS):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (bundle / "config.json").write_bytes(encode(config))
    (bundle / "runtime.json").write_bytes(encode(runtime))
    result = subprocess.run(
        [
            runc,
            "--root",
            str(directory / "state"),
            "run",
            "--bundle",
            str(bundle),
            f"osbuilder-test-{os.getpid()}-{entry.name}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line.startswith("Cap"):
            key, value = line.split(":", 1)
            report[key] = value.strip()
        else:
            for word in line.split(" "):
                if "=" in word:
                    key, _, value = word.partition("=")
                    report[key] = value
                elif word:  # more words of the previous value
                    report[key] += " " + word
    return report


def test_root_container_with_new_namespaces_and_readonly_root(runc: str, tmp_path: Path) -> None:
    [entry] = SPEC.onboot or []
    report = run(runc, tmp_path, entry)
    caps = mask(["CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
    # uid 0: permitted and effective become the bounding set at exec.
    assert report["CapBnd"] == report["CapInh"] == report["CapPrm"] == caps
    assert report["CapEff"] == caps
    assert report["CapAmb"] == mask([])
    assert (report["uid"], report["gid"]) == ("0", "0")
    assert report["hostname"] == "box"
    assert report["net"].split() == ["lo"]
    assert report["root"] == "ro"
    assert report["run"] == "tmpfs"
    assert report["cwd"] == "/"


def test_named_user_with_label_defaults_and_ambient(runc: str, tmp_path: Path) -> None:
    [entry] = SPEC.services or []
    ids = allocate_ids(SPEC)
    report = run(runc, tmp_path, entry)
    # label CAP_KILL + capabilities.add CAP_CHOWN, and the ambient one in the bounding set
    bounding = mask(["CAP_KILL", "CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    assert report["CapBnd"] == report["CapInh"] == bounding
    # a non-root exec keeps only the ambient capabilities
    ambient = mask(["CAP_NET_BIND_SERVICE"])
    assert report["CapPrm"] == report["CapEff"] == report["CapAmb"] == ambient
    assert (int(report["uid"]), int(report["gid"])) == (ids["app"], ids["first"])
    assert "7" in report["groups"].split()
    assert report["cwd"] == "/srv"  # the label's, over the image's WorkingDir
    assert report["env"] == "label"
    assert report["nofile"] == "1000/2000"
    assert report["run"] == "none"
    assert len(report["net"].split()) >= 1  # the host's network namespace


def test_runtime_json_carries_restart(tmp_path: Path) -> None:
    [entry] = SPEC.services or []
    image = IMAGES[entry.image]
    _, runtime = runtime_config(entry, image, load_label(image, entry.image), allocate_ids(SPEC))
    document: Any = json.loads(encode(runtime))
    assert document["restart"] == "never"
