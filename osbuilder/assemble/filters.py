"""LinuxKit's adjustments to every image it unpacks (moby/build/image.go).

Dropped: .dockerenv, Dockerfile, dev/console, dev/pts, dev/shm, etc/hostname.
etc/hosts is a standard localhost table, whether the image had one or not.
etc/resolv.conf: in the system's root (init images, filesystem volumes) a
symlink to /run/resolvconf/resolv.conf, which dhcpcd fills; in a container a
stub, had the image one or not, unless the image made it a symlink itself (an
osbuilder image that wants the system's resolver, like dhcpcd's; LinuxKit
would replace that too). dev, dev/pts, dev/shm, etc, proc, sys exist, and
etc/mtab points at /proc/mounts.
"""

from __future__ import annotations

from osbuilder.assemble.entry import Entry, Kind
from osbuilder.assemble.tree import Tree

DROPPED = (".dockerenv", "Dockerfile", "dev/console", "dev/pts", "dev/shm", "etc/hostname")
HOSTS = (
    "127.0.0.1       localhost\n"
    "::1     localhost ip6-localhost ip6-loopback\n"
    "fe00::0 ip6-localnet\n"
    "ff00::0 ip6-mcastprefix\n"
    "ff02::1 ip6-allnodes\n"
    "ff02::2 ip6-allrouters\n"
)
RESOLV_STUB = "\n# no resolv.conf configured\n"
RESOLV_SYMLINK = "/run/resolvconf/resolv.conf"
DIRECTORIES = ("dev", "dev/pts", "dev/shm", "etc", "proc", "sys")


def adjust_image(
    tree: Tree, base: str, *, system_root: bool, source: str, location: str, epoch: int
) -> None:
    def path(name: str) -> str:
        return f"{base}/{name}" if base else name

    def put(name: str, kind: Kind, mode: int, *, text: str = "", link: str = "") -> None:
        entry = Entry(
            path(name), kind, mode, mtime=epoch, source=source, location=location, linkname=link
        )
        if kind is Kind.FILE:
            entry.content = tree.spool.write_bytes(text.encode())
        tree.put(entry)

    for name in DROPPED:
        tree.remove(path(name))
    for name in DIRECTORIES:
        existing = tree.get(path(name))
        if existing is None or existing.kind is not Kind.DIRECTORY:
            put(name, Kind.DIRECTORY, 0o755)
    if tree.get(path("etc/mtab")) is None:
        put("etc/mtab", Kind.SYMLINK, 0o777, link="/proc/mounts")
    put("etc/hosts", Kind.FILE, 0o644, text=HOSTS)
    resolv = tree.get(path("etc/resolv.conf"))
    if system_root:
        put("etc/resolv.conf", Kind.SYMLINK, 0o777, link=RESOLV_SYMLINK)
    elif resolv is None or resolv.kind is not Kind.SYMLINK:
        put("etc/resolv.conf", Kind.FILE, 0o644, text=RESOLV_STUB)
