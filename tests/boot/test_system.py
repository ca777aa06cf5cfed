"""One booted system, driven through its serial console, shows the init's behaviour:
onboot order and failures, capabilities, a read-only root, restarts, the getty shell
with osbuilder-ctl, what the dhcpcd package configures, a container writing a file it
shares (a hard link) with another image's root, and a clean poweroff running the
onshutdown containers.

The VM boots once (module fixture) and the tests read its console in order; the
last one powers it off.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.boot.conftest import build_system, spec_text
from tests.conftest import Packages

pytestmark = pytest.mark.boot

SPEC = """
kernel:
  image: {kernel}
  cmdline: "console=ttyS0"
init: [{init}, {crun}]
onboot:
  - name: dhcpcd
    image: {dhcpcd}
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
  - name: first
    image: {getty}
    command: [/bin/busybox, sh, -c, "echo first >> /results/order"]
    binds: [/var/results:/results]
    runtime: {{mkdir: [/var/results]}}
  - name: second
    image: {getty}
    command: [/bin/busybox, sh, -c, "echo second >> /results/order"]
    binds: [/var/results:/results]
  - name: failing
    image: {getty}
    command: [/bin/busybox, sh, -c, "echo about to fail; exit 3"]
  - name: third
    image: {getty}
    command: [/bin/busybox, sh, -c, "echo third >> /results/order"]
    binds: [/var/results:/results]
  # /etc/hosts has the same bytes in every container's root: one file in the initrd.
  - name: appender
    image: {dhcpcd}
    command:
      - /bin/busybox
      - sh
      - -c
      - >-
        echo "10.0.2.99 written-by-appender" >> /etc/hosts &&
        echo "appender-sees=$(/bin/busybox grep -c written-by-appender /etc/hosts)"
services:
  - name: printer
    image: {getty}
    readonly: true
    capabilities: [CAP_NET_ADMIN, CAP_CHOWN]
    binds: [/var/results:/results]
    command:
      - /bin/busybox
      - sh
      - -c
      - >-
        echo "order=$(/bin/busybox tr '\\n' , < /results/order)";
        /bin/busybox grep CapEff /proc/self/status;
        if /bin/busybox touch /probe 2>/dev/null; then echo root=writable;
        else echo root=readonly; fi;
        echo "printer-sees=$(/bin/busybox grep -c written-by-appender /etc/hosts)";
        exec /bin/busybox sleep 100000
  - name: crasher
    image: {getty}
    command: [/bin/busybox, sh, -c, "echo crashing now; exit 1"]
  - name: getty
    image: {getty}
    env: [INSECURE=true]
onshutdown:
  - name: goodbye
    image: {getty}
    command: [/bin/busybox, sh, -c, "echo onshutdown-marker-7f3a"]
"""

BOOT_TIMEOUT = 240


@pytest.fixture(scope="module")
def console(
    packages: Packages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[pexpect.spawn]:
    work = tmp_path_factory.mktemp("system")
    spec = work / "system.yml"
    spec.write_text(spec_text(packages, SPEC))
    prefix = build_system(packages, spec, work / "out")
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "osbuilder",
            "run",
            "--accel",
            "tcg",
            "--net",
            "restricted",
            "--timeout",
            "600",
            str(prefix),
        ],
        encoding="utf-8",
        codec_errors="replace",
        timeout=BOOT_TIMEOUT,
        dimensions=(50, 200),
    )
    child.logfile_read = (work / "console.txt").open("w")
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_onboot_containers_run_in_order(console: pexpect.spawn) -> None:
    console.expect(r"order=first,second,third,")


def test_service_has_exactly_its_capabilities_and_a_read_only_root(
    console: pexpect.spawn,
) -> None:
    console.expect(r"CapEff:\s+([0-9a-f]{16})")
    effective = int(console.match.group(1), 16)
    assert effective == (1 << 12) | (1 << 0)  # CAP_NET_ADMIN (12), CAP_CHOWN (0)
    console.expect(r"root=(readonly|writable)")
    assert console.match.group(1) == "readonly"


def test_a_container_writing_a_shared_file_leaves_the_other_images_copy_unchanged(
    console: pexpect.spawn,
) -> None:
    """The appender (dhcpcd's image) appends to its /etc/hosts, which is one inode with
    the printer's (getty's image): through its overlay, so the printer, started after it,
    reads its own copy as it was."""
    console.expect(r"printer-sees=(\d+)")
    assert console.match.group(1) == "0"
    assert "appender-sees=1" in _seen(console)


def test_onboot_failure_is_reported_and_boot_goes_on(console: pexpect.spawn) -> None:
    text = _seen(console)
    assert "onboot/failing: about to fail" in text or "failing: about to fail" in text
    assert re.search(r"\*\*\* onboot failing FAILED: exit code 3 \*\*\*", text), text[-3000:]
    assert "onboot third: exit code 0" in text


def test_failing_service_is_restarted(console: pexpect.spawn) -> None:
    console.expect(r"service crasher: restarting in")
    console.expect(r"crasher: crashing now")  # it ran again


def test_getty_gives_a_root_shell_with_osbuilder_ctl(console: pexpect.spawn) -> None:
    assert "service getty: started" in _seen(console)
    console.sendline("")
    console.expect(r"# ", timeout=60)
    console.sendline("osbuilder-ctl ps")
    console.expect(r"NAME\s+STATE\s+PID\s+RESTARTS", timeout=60)
    console.expect(r"printer\s+running", timeout=30)


def test_the_shared_file_is_one_unchanged_inode_in_the_system(console: pexpect.spawn) -> None:
    """Seen from the getty shell (its image binds the system's /containers): both images'
    /etc/hosts are one inode, which the appender's write did not reach."""
    dhcpcd, getty = (
        f"/containers/onboot/{name}/lower/etc/hosts" for name in ("000-dhcpcd", "001-first")
    )
    stat = "/bin/busybox stat -c"
    console.sendline(
        f'echo "same-inode=$([ $({stat} %i {dhcpcd}) = $({stat} %i {getty}) ] && echo yes)'
        f' links=$({stat} %h {getty}) written=$(/bin/busybox grep -c written-by {dhcpcd})"'
    )
    console.expect(r"same-inode=(\w*) links=(\d+) written=(\d+)", timeout=60)
    assert console.match.group(1) == "yes"
    assert int(console.match.group(2)) >= 2
    assert console.match.group(3) == "0"


def test_dhcpcd_configures_the_link_from_qemus_dhcp(console: pexpect.spawn) -> None:
    # QEMU's restricted user network (tests reach nothing outside loopback) leases
    # 10.0.2.15/24 but offers no gateway and no DNS server: so a subnet route only.
    console.sendline("/bin/busybox ip -4 addr show eth0; /bin/busybox ip route")
    console.expect(r"inet 10\.0\.2\.15/24", timeout=60)
    console.expect(r"10\.0\.2\.0/24 dev eth0", timeout=30)
    # resolv.conf written all the same, for the system and its containers (no server in it).
    console.sendline("/bin/busybox cat /run/resolvconf/resolv.conf")
    console.expect(r"# Generated by dhcpcd", timeout=30)


def test_poweroff_runs_onshutdown_and_exits_zero(console: pexpect.spawn) -> None:
    console.sendline("osbuilder-ctl poweroff")
    console.expect(r"onshutdown-marker-7f3a", timeout=120)
    console.expect(pexpect.EOF, timeout=120)
    console.close()
    assert console.exitstatus == 0


def _seen(console: pexpect.spawn) -> str:
    """Everything the console printed so far (the log pexpect keeps)."""
    console.logfile_read.flush()
    return Path(console.logfile_read.name).read_text(errors="replace")
