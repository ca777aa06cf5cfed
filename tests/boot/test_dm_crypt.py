"""The dm-crypt package (LinuxKit's command line): a LUKS2 disk and a plain dm-crypt disk
made on blank disks, mounted, written; opened again on the next boot; a disk holding a
file system is not encrypted over; a wrong key opens nothing and formats nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.boot.conftest import BASE_SPEC, build_template, run_until_poweroff
from tests.conftest import Packages

pytestmark = pytest.mark.boot

SPEC = (
    BASE_SPEC
    + """
onboot:
  - name: luks
    image: {dm-crypt}
    command: [/usr/bin/crypto, --luks, secret, /dev/vda]
  - name: plain
    image: {dm-crypt}
    command: [/usr/bin/crypto, -k, plain.key, open, /dev/vdb]
  - name: theirs
    image: {dm-crypt}
    command: [/usr/bin/crypto, --luks, theirs, /dev/vdc]
  - name: mount
    image: {mount}
    command: [/usr/bin/mountie, -device, /dev/mapper/secret, /var/secure]
  - name: mount-plain
    image: {mount}
    command: [/usr/bin/mountie, -device, /dev/mapper/open, /var/plain]
  - name: use
    image: {mount}
    binds.add: [/var:/var]
    command:
      - /bin/sh
      - -c
      - >-
        if [ -f /var/secure/marker ]; then
        echo "found: $(cat /var/secure/marker) / $(cat /var/plain/marker)";
        else echo "top secret text" > /var/secure/marker;
        echo "plain secret text" > /var/plain/marker; echo written; fi
  - name: poweroff
    image: {poweroff}
    command: [/poweroff.sh, "0"]
files:
  - path: etc/dm-crypt/key
    contents: "KEY-0123456789abcdef0123456789abcdef"
    mode: "0600"
  - path: etc/dm-crypt/plain.key
    contents: "PLAINKEY-0123456789abcdef0123456789"
    mode: "0600"
"""
)


def test_encrypted_disks_are_made_reopened_and_never_made_over_data(
    packages: Packages, tmp_path: Path
) -> None:
    system = build_template(packages, SPEC, tmp_path / "crypt")
    luks, plain, theirs = (tmp_path / f"{name}.img" for name in ("luks", "plain", "theirs"))
    subprocess.run(["truncate", "-s", "64M", str(luks), str(plain), str(theirs)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", "THEIRS", str(theirs)], check=True)
    untouched = theirs.read_bytes()
    disks = [f"--disk={disk},format=raw" for disk in (luks, plain, theirs)]

    console = run_until_poweroff(system, tmp_path / "first", *disks)
    assert "dm-crypt: /dev/vda: LUKS2 header, made with /etc/dm-crypt/key" in console
    assert "dm-crypt: /dev/mapper/secret: ext4 made" in console
    assert "dm-crypt: /dev/vda on /dev/mapper/secret (ext4, LUKS)" in console
    assert "dm-crypt: /dev/vdb on /dev/mapper/open (ext4)" in console
    assert "dm-crypt: /dev/vdc holds ext4: not encrypted over (--force" in console
    assert "*** onboot theirs FAILED: exit code 1 ***" in console
    assert "onboot/use: written" in console
    assert theirs.read_bytes() == untouched
    probed = subprocess.run(
        ["blkid", "-p", "-o", "value", "-s", "TYPE", str(luks)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probed.stdout.strip() == "crypto_LUKS"
    # What was written is on the disks, but not as it was written.
    assert b"top secret text" not in luks.read_bytes()
    assert b"plain secret text" not in plain.read_bytes()

    console = run_until_poweroff(system, tmp_path / "second", *disks)
    assert "onboot/use: found: top secret text / plain secret text" in console
    assert "ext4 made" not in console

    # Another key: the LUKS disk does not open, the plain one shows noise and is left be.
    other_key = SPEC.replace("0123456789abcdef", "fedcba9876543210")
    system = build_template(packages, other_key, tmp_path / "other-key")
    before = luks.read_bytes(), plain.read_bytes()
    console = run_until_poweroff(system, tmp_path / "third", *disks)
    assert "dm-crypt: /dev/vda: the key /etc/dm-crypt/key does not open it" in console
    assert (
        "dm-crypt: /dev/vdb: no file system through this key (another key's data?): not formatted"
    ) in console
    assert (luks.read_bytes(), plain.read_bytes()) == before
