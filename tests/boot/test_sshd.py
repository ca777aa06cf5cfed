"""examples/sshd.yml used as its comments say: the user's ~/.ssh key goes in, ssh and scp
work; examples/openstack.yml lets in the key pair Nova's metadata service names."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from osbuilder.vm.qemu import KernelBoot, Publish, VmConfig
from tests.boot.conftest import (
    build_system,
    free_port,
    metadata_service_command,
    osbuilder,
    run_detached,
)
from tests.conftest import REPO, Packages

pytestmark = pytest.mark.boot


def make_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


def client_options(port: int, key: Path) -> list[str]:
    """Only this key, no user configuration, no host key prompt, no password prompt."""
    return [
        "-F",
        "/dev/null",
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=30",
        "-o",
        "LogLevel=ERROR",
        f"-oPort={port}",
    ]


def ssh(port: int, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *client_options(port, key), "root@127.0.0.1", command],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_sshd_example_lets_the_users_key_in_and_no_other(
    packages: Packages, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    key = make_key(home / ".ssh/id_ed25519")  # where the example's `files` looks for it
    stranger = make_key(tmp_path / "stranger")
    prefix = build_system(
        packages,
        REPO / "examples/sshd.yml",
        tmp_path / "out",
        env={**os.environ, "HOME": str(home)},
    )
    port = free_port()
    state = Path(f"{prefix}-state")
    started = run_detached(prefix, port, guest_port=22)
    try:  # (a VM that started but did not answer is stopped too)
        assert started.returncode == 0, started.stderr
        logged_in = ssh(port, key, "id -u; cat /root/.ssh/authorized_keys")
        assert logged_in.returncode == 0, logged_in.stderr
        uid, authorized = logged_in.stdout.split("\n", 1)
        assert uid == "0"
        assert authorized.strip() == Path(f"{key}.pub").read_text().strip()

        # scp speaks SFTP since OpenSSH 9: the server's sftp subsystem must be there.
        sent = tmp_path / "sent.txt"
        sent.write_text("osbuilder over scp\n")
        copied = subprocess.run(
            ["scp", *client_options(port, key), str(sent), "root@127.0.0.1:/tmp/received"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert copied.returncode == 0, copied.stderr
        assert ssh(port, key, "cat /tmp/received").stdout == "osbuilder over scp\n"

        refused = ssh(port, stranger, "true")
        assert refused.returncode == 255
        assert "Permission denied (publickey)" in refused.stderr
    finally:
        stopped = osbuilder("stop", str(state))
    assert stopped.returncode == 0, stopped.stderr
    console = (state / "console.log").read_text(errors="replace")
    assert "service sshd FAILED" not in console


def test_openstack_example_lets_the_key_pairs_key_in_with_novas_hostname(
    packages: Packages, tmp_path: Path
) -> None:
    key = make_key(tmp_path / "nova-key")
    latest = tmp_path / "service/openstack/latest"
    latest.mkdir(parents=True)
    metadata = {
        "hostname": "sshd-1.novalocal",
        "public_keys": {"nova-key": Path(f"{key}.pub").read_text().strip()},
    }
    (latest / "meta_data.json").write_text(json.dumps(metadata))
    prefix = build_system(packages, REPO / "examples/openstack.yml", tmp_path / "out")
    port = free_port()
    state = tmp_path / "state"
    config = VmConfig(
        KernelBoot.from_prefix(prefix),
        state,
        network="restricted",
        publish=[Publish(port, 22)],
        detach=True,
    )
    command = metadata_service_command(config, tmp_path / "service")
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        try:
            deadline = time.monotonic() + 240
            while (logged_in := ssh(port, key, "hostname; id -u")).returncode != 0:
                assert time.monotonic() < deadline, logged_in.stderr
                time.sleep(2)
            assert logged_in.stdout.split() == ["sshd-1.novalocal", "0"]
        finally:
            stopped = osbuilder("stop", str(state))
    assert stopped.returncode == 0, stopped.stderr
    console = config.console_log.read_text(errors="replace")
    assert "metadata: openstack: 1 SSH key(s) in /run/config/ssh/authorized_keys" in console
