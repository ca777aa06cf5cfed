"""`osbuilder run --data`: the metadata package puts the user data in /run/config, as a
file tree when it is LinuxKit's JSON, and sets the hostname it names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from osbuilder.vm.qemu import KernelBoot, VmConfig
from tests.boot.conftest import (
    build_system,
    build_template,
    metadata_service_command,
    run_until_poweroff,
    spec_text,
)
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
    assert "metadata: cdrom: no cidata volume" in console
    assert "metadata: no user data: none from cdrom" in console
    assert "onboot metadata: exit code 0" in console


OPENSTACK_SPEC = SPEC.replace(
    "onboot:\n",
    "onboot:\n  - name: dhcpcd\n    image: {dhcpcd}\n"
    '    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]\n',
).replace(
    "    image: {metadata}\n",
    '    image: {metadata}\n    command: ["/usr/bin/metadata", "openstack"]\n',
)


def run_with_metadata_service(system: Path, state: Path, service: Path) -> str:
    """Boot `system` with an OpenStack metadata service serving the files under `service`
    (conftest.metadata_service_command) until it powers off; its console."""
    config = VmConfig(KernelBoot.from_prefix(system), state, network="restricted", detach=True)
    subprocess.run(metadata_service_command(config, service), check=True, timeout=240)
    return config.console_log.read_text(errors="replace")


def test_openstacks_metadata_service_gives_the_hostname_keys_and_user_data(
    packages: Packages, tmp_path: Path
) -> None:
    system = build_template(packages, OPENSTACK_SPEC, tmp_path / "openstack")
    latest = tmp_path / "service/openstack/latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(
        json.dumps(
            {
                "uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38",
                "hostname": "redis-1.novalocal",
                "public_keys": {"mykey": "ssh-ed25519 AAAA nova@key"},
            }
        )
    )
    (latest / "user_data").write_text("plain user data\n")
    console = run_with_metadata_service(system, tmp_path / "state", tmp_path / "service")
    assert "metadata: openstack: 1 SSH key(s) in /run/config/ssh/authorized_keys" in console
    assert "provider=openstack name=redis-1.novalocal" in console
    assert "key=ssh-ed25519 AAAA nova@key modes=700 600" in console
    assert "userdata=plain user data" in console

    # No user data is no error; no service at all is told, and not an error either.
    (latest / "user_data").unlink()
    console = run_with_metadata_service(system, tmp_path / "again", tmp_path / "service")
    assert "metadata: openstack: no user data" in console
    assert "provider=openstack name=redis-1.novalocal" in console
    console = run_until_poweroff(system, tmp_path / "none")
    assert "metadata: openstack: no metadata service at 169.254.169.254" in console
    assert "onboot metadata: exit code 0" in console


def cloud_system(packages: Packages, work: Path, *providers: str) -> Path:
    """The report system of OPENSTACK_SPEC reading `providers` instead, built in `work`."""
    command = ", ".join(f'"{provider}"' for provider in providers)
    template = OPENSTACK_SPEC.replace(
        '["/usr/bin/metadata", "openstack"]', f'["/usr/bin/metadata", {command}]'
    )
    return build_template(packages, template, work / "cloud")


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_ec2s_metadata_service_through_imdsv2_or_v1(packages: Packages, tmp_path: Path) -> None:
    system = cloud_system(packages, tmp_path, "aws")
    service = write_files(
        tmp_path / "ec2",
        {
            "latest/meta-data/instance-id": "i-0123456789abcdef0",
            "latest/meta-data/hostname": "ip-10-0-2-15.eu-west-1.compute.internal",
            "latest/meta-data/public-keys/0/openssh-key": "ssh-ed25519 AAAA ec2@key\n",
            "latest/user-data": "plain user data\n",
        },
    )
    # The service answers only requests that carry the session token (IMDSv2).
    console = run_with_metadata_service(system, tmp_path / "v2", service)
    assert "metadata: aws: 1 SSH key(s) in /run/config/ssh/authorized_keys" in console
    assert "provider=aws name=ip-10-0-2-15.eu-west-1.compute.internal" in console
    assert "key=ssh-ed25519 AAAA ec2@key modes=700 600" in console
    assert "userdata=plain user data" in console

    # A service without IMDSv2 refuses the token's PUT: read without one.
    (service / "imdsv1-only").touch()
    (service / "latest/user-data").unlink()
    console = run_with_metadata_service(system, tmp_path / "v1", service)
    assert "provider=aws name=ip-10-0-2-15.eu-west-1.compute.internal" in console
    assert "key=ssh-ed25519 AAAA ec2@key modes=700 600" in console
    assert "metadata: aws: no user data" in console


GCE_HOSTNAME = "a-long-instance-name-for-a-test.europe-west1-b.c.my-project-123456.internal"


def test_compute_engines_metadata_server_after_a_provider_that_is_not_there(
    packages: Packages, tmp_path: Path
) -> None:
    """aws first: Compute Engine's server is no EC2 service, so gcp answers. Its hostname is
    longer than a host name may be: the first label is taken."""
    system = cloud_system(packages, tmp_path, "aws", "gcp")
    v1 = "computeMetadata/v1"
    service = write_files(
        tmp_path / "gce",
        {
            f"{v1}/instance/id": "4520031799277581759",
            f"{v1}/instance/hostname": GCE_HOSTNAME,
            f"{v1}/instance/attributes/ssh-keys": "alice:ssh-ed25519 AAAA alice@laptop\n",
            f"{v1}/project/attributes/ssh-keys": "bob:ssh-ed25519 BBBB bob@desk",
            f"{v1}/instance/attributes/user-data": '{"motd": {"content": "hi"}}',
        },
    )
    console = run_with_metadata_service(system, tmp_path / "gce-state", service)
    assert "metadata: aws: 169.254.169.254 is no EC2 metadata service" in console
    assert "metadata: gcp: 2 SSH key(s) in /run/config/ssh/authorized_keys" in console
    assert "provider=gcp name=a-long-instance-name-for-a-test" in console
    assert "key=ssh-ed25519 AAAA alice@laptop" in console
    assert "ssh-ed25519 BBBB bob@desk modes=700 600" in console
    assert "metadata: /run/config/motd" in console

    # An instance that blocks the project's keys has only its own.
    write_files(service, {f"{v1}/instance/attributes/block-project-ssh-keys": "true"})
    (service / f"{v1}/instance/attributes/user-data").unlink()
    console = run_with_metadata_service(system, tmp_path / "blocked", service)
    assert "metadata: gcp: 1 SSH key(s) in /run/config/ssh/authorized_keys" in console
    assert "key=ssh-ed25519 AAAA alice@laptop modes=700 600" in console
    assert "metadata: gcp: no user data" in console


def test_digitalocean_and_hetzner_metadata(packages: Packages, tmp_path: Path) -> None:
    """hetzner first: on DigitalOcean's service it finds nothing and digitalocean answers;
    on Hetzner's, hetzner does."""
    system = cloud_system(packages, tmp_path, "hetzner", "digitalocean")
    droplet = {
        "droplet_id": 2756294,
        "hostname": "sample-droplet",
        "public_keys": ["ssh-ed25519 AAAA do@key", "ssh-ed25519 BBBB do@other"],
        "user_data": "#!/bin/sh\necho droplet\n",
    }
    service = write_files(tmp_path / "do", {"metadata/v1.json": json.dumps(droplet)})
    console = run_with_metadata_service(system, tmp_path / "do-state", service)
    assert "metadata: hetzner: no metadata service at 169.254.169.254" in console
    assert "metadata: digitalocean: 2 SSH key(s) in /run/config/ssh/authorized_keys" in console
    assert "provider=digitalocean name=sample-droplet" in console
    assert "key=ssh-ed25519 AAAA do@key" in console
    assert "userdata=#!/bin/sh" in console

    service = write_files(
        tmp_path / "hetzner",
        {
            "hetzner/v1/metadata/instance-id": "42",
            "hetzner/v1/metadata/hostname": "hetzner-1",
            "hetzner/v1/metadata/public-keys": '["ssh-ed25519 CCCC hetzner@key"]',
            "hetzner/v1/userdata": "",
        },
    )
    console = run_with_metadata_service(system, tmp_path / "hetzner-state", service)
    assert "provider=hetzner name=hetzner-1" in console
    assert "key=ssh-ed25519 CCCC hetzner@key modes=700 600" in console
    assert "metadata: hetzner: no user data" in console
