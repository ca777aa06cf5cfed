"""The kernel command line a system boots with: the spec's words, and what the initrd needs.

The kernel unpacks the initrd into its first root, `rootfs`, which is a tmpfs capped at
half of the memory when the command line names neither `root=` nor `rootfstype=`
(init/do_mounts.c), and a ramfs without a cap otherwise. A Redis OS whose tree is 63 MB
needs that cap gone to boot in 160 MB: under the cap the unpacking fails half-way
('Initramfs unpacking failed: write error') and /init starts on a partial root. So the
system's command line asks for a ramfs unless the spec chose a root itself. The cap is
not what bounds the system's writes: they go to the tmpfs mounts on /run and /tmp and
the containers' own (each capped), and to service logs that rotate.
"""

from __future__ import annotations

INITRD_ROOT = "rootfstype=ramfs"
_ROOT_CHOSEN = ("root=", "rootfstype=")


def system_cmdline(spec_cmdline: str | None) -> str:
    """The spec's `kernel.cmdline` with INITRD_ROOT added when the spec left the root open."""
    words = (spec_cmdline or "").split()
    if any(word.startswith(_ROOT_CHOSEN) for word in words):
        return spec_cmdline or ""
    return " ".join([*words, INITRD_ROOT])
