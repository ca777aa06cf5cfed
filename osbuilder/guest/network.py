"""The little networking PID 1 does itself: loopback up, and a MAC for the hostname.

Bringing lo up makes the kernel give it 127.0.0.1/8 and ::1 by itself.
"""

from __future__ import annotations

import _socket  # not socket.py: its enums cost PID 1's start 8 M instructions (see control)
import contextlib
import fcntl
import os
import struct

from osbuilder.guest.fspath import Path

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sh22x")  # struct ifreq: name, then the flags of the union


def interface_up(name: str) -> None:
    with contextlib.closing(_socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)) as sock:
        request = _IFREQ.pack(name.encode(), 0)
        _, flags = _IFREQ.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ.pack(name.encode(), flags | _IFF_UP))


def links(sysfs: Path = Path("/sys")) -> list[str]:
    """The network links but lo, sorted. (os.listdir: a pathlib glob costs twenty times
    as much, milliseconds on an emulated CPU.)"""
    try:
        names = os.listdir(sysfs / "class/net")
    except OSError:
        return []
    return sorted(name for name in names if name != "lo")


def links_up(sysfs: Path = Path("/sys")) -> list[str]:
    """Set every network link up, so that their carrier is there by the time a DHCP
    client asks (a virtio link takes about a second); configuring them is not ours."""
    raised = []
    for name in links(sysfs):
        try:
            interface_up(name)
            raised.append(name)
        except OSError:
            continue  # a link that will not come up is the DHCP client's to report
    return raised


def first_mac(sysfs: Path = Path("/sys")) -> str | None:
    """The address of the first network interface that has one (not lo), as aa:bb:..."""
    for name in links(sysfs):
        try:
            with open(sysfs / "class/net" / name / "address") as file:
                address = file.read().strip()
        except OSError:
            continue
        if address and address.strip("0:"):
            return address
    return None


def default_hostname(mac: str | None) -> str:
    """osbuilder-<last three bytes of the MAC>, like LinuxKit's linuxkit-<mac>."""
    if not mac:
        return "osbuilder"
    return "osbuilder-" + "".join(mac.split(":")[-3:]).lower()
