"""dpkg's database of installed packages, for a root whose packages dpkg did not install.

mmdebstrap's extract variant unpacks the packages without dpkg, which leaves
var/lib/dpkg/status empty: then nothing that reads it (a vulnerability scanner, an SBOM
tool, osbuilder's sbom.spdx.json) knows what the image holds. mmdebstrap runs this module
as its extract hook (`python -m osbuilder.pkg.dpkg_status ROOT`) while the downloaded
packages are still in ROOT/var/cache/apt/archives: each one's control file becomes its
status paragraph, installed, as dpkg would have written it. One process reads them all
(a .deb is an ar archive whose control.tar holds `control`): running dpkg-deb once per
package cost a second per image.
"""

from __future__ import annotations

import io
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

import zstandard

AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60
ARCHIVES = "var/cache/apt/archives"
STATUS = "var/lib/dpkg/status"


class NotADeb(Exception):
    pass


def control_file(deb: Path) -> bytes:
    """The `control` file of the package `deb`."""
    with deb.open("rb") as archive:
        if archive.read(len(AR_MAGIC)) != AR_MAGIC:
            raise NotADeb(f"{deb.name} is not an ar archive")
        while len(header := archive.read(AR_HEADER)) == AR_HEADER:
            name = header[:16].rstrip(b" ").rstrip(b"/").decode(errors="replace")
            size = int(header[48:58])
            if not name.startswith("control.tar"):
                archive.seek(size + size % 2, io.SEEK_CUR)  # members are 2-byte aligned
                continue
            data = archive.read(size)
            if name.endswith(".zst"):  # (tarfile reads gz, xz and bz2 itself)
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar:
                    if member.isfile() and member.name.lstrip("./") == "control":
                        extracted = tar.extractfile(member)
                        assert extracted is not None
                        return extracted.read()
            raise NotADeb(f"{deb.name}: its {name} has no control file")
    raise NotADeb(f"{deb.name} has no control.tar")


def status_database(debs: Sequence[Path]) -> bytes:
    """The status paragraphs of `debs`, installed, in the order given."""
    paragraphs = [
        control_file(deb).strip(b"\n") + b"\nStatus: install ok installed\n" for deb in debs
    ]
    return b"\n".join(paragraphs)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} ROOT", file=sys.stderr)
        return 2
    root = Path(argv[1])
    try:
        database = status_database(sorted((root / ARCHIVES).glob("*.deb")))
        (root / STATUS).write_bytes(database)
    except (OSError, NotADeb, tarfile.TarError, zstandard.ZstdError) as exc:
        print(f"E: osbuilder could not write {STATUS}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
