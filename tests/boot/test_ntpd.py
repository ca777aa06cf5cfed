"""The ntpd package sets a wrong clock right from an NTP server: a real one's answers,
served on the host's loopback (QEMU's user network shows it to the guest as 10.0.2.2)."""

from __future__ import annotations

import datetime
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot.conftest import BASE_SPEC, DHCPCD_ONBOOT, build_template, run_until_poweroff
from tests.conftest import Packages

pytestmark = pytest.mark.boot

NTP_EPOCH_OFFSET = 2208988800  # 1900-01-01 to 1970-01-01, in seconds


def ntp_time(seconds: float) -> bytes:
    whole = int(seconds) + NTP_EPOCH_OFFSET
    return struct.pack("!II", whole, int((seconds % 1) * 2**32))


def answer(request: bytes, received: float) -> bytes:
    """A stratum 1 server's reply (RFC 5905) to a client's request: the host's clock."""
    version = (request[0] >> 3) & 0x7
    return (
        struct.pack("!BBbb", (version << 3) | 4, 1, request[2], -20)  # no leap warning, mode 4
        + struct.pack("!II", 0, 0x10)  # root delay, root dispersion (16.16 s)
        + b"LOCL"
        + ntp_time(received)  # reference: the clock was set just now
        + request[40:48]  # origin: the client's transmit time, which it checks
        + ntp_time(received)
        + ntp_time(time.time())
    )


@pytest.fixture
def ntp_server() -> Iterator[list[float]]:
    """An NTP server on 127.0.0.1:123 while the test runs; yields the times it answered."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 123))
    server.settimeout(0.2)
    answered: list[float] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                request, client = server.recvfrom(512)
            except TimeoutError:
                continue
            received = time.time()
            if len(request) >= 48 and request[0] & 0x7 == 3:  # a client's request
                server.sendto(answer(request, received), client)
                answered.append(received)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield answered
    finally:
        stop.set()
        thread.join()
        server.close()


SPEC = (
    BASE_SPEC
    + "onboot:"
    + DHCPCD_ONBOOT
    + """  - name: wrong-clock
    image: {ntpd}
    command: [/bin/busybox, date, -u, -s, "2020-01-01 00:00:00"]
  - name: before
    image: {ntpd}
    command: [/bin/busybox, date, -u, "+before: %Y"]
services:
  - name: ntpd
    image: {ntpd}
    command: [/usr/bin/ntpd.sh, -s]
    binds.add: [/etc/ntpd-local.conf:/etc/openntpd/ntpd.conf]
  - name: after
    image: {poweroff}
    command:
      - /bin/sh
      - -c
      - >-
        for i in $(seq 240); do [ "$(date -u +%Y)" != 2020 ] && break; sleep 0.5; done;
        date -u "+after: %Y-%m-%d"; kill -USR2 1
files:
  - path: etc/ntpd-local.conf
    contents: "server 10.0.2.2\\n"
    mode: "0644"
"""
)


def test_ntpd_sets_the_clock(packages: Packages, ntp_server: list[float], tmp_path: Path) -> None:
    prefix = build_template(packages, SPEC, tmp_path / "ntpd")
    # The user network, for the host's loopback; the guest talks to 10.0.2.2 only.
    console = run_until_poweroff(prefix, tmp_path / "state", "--net", "user")
    today = datetime.datetime.now(datetime.UTC)
    assert "before: 2020" in console
    assert ntp_server, "the guest's ntpd never asked the server"
    assert "set local clock to" in console  # OpenNTPD's own words
    assert f"after: {today:%Y-%m-%d}" in console
