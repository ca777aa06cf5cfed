"""sbom.spdx.json: what the built system is made of, as an SPDX 2.3 document in its root.

LinuxKit writes one too (`sbom.spdx.json`, `--no-sbom`, `--sbom-output`), merging the
SBOM attestations its package images carry. osbuilder reads what the images themselves
say: every image of the spec (kernel, init, containers, volumes) is a package of the
document, named by repository and manifest digest (a `pkg:oci` purl), and contains the
packages of its own package database: dpkg's `var/lib/dpkg/status` (`pkg:deb` purls, the
Debian release from the image's os-release) or apk's `lib/apk/db/installed` (`pkg:apk`).
Images of other origins are listed even when they have no database. The document is
reproducible: its time is SOURCE_DATE_EPOCH, its namespace a digest of its contents.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from urllib.parse import quote

from msgspec import Struct, field

from osbuilder import __version__
from osbuilder.assemble.entry import Content, Entry, Kind
from osbuilder.assemble.jsondoc import json_document
from osbuilder.assemble.package_db import APK_INSTALLED, DPKG_STATUS
from osbuilder.assemble.tree import Tree
from osbuilder.oci.reference import parse_reference

SOURCE = "osbuilder.sbom"
DEFAULT_PATH = "sbom.spdx.json"  # LinuxKit's name, in the root
NAMESPACE = "https://osbuilder.invalid/spdx/"  # + a digest: a URI no one else makes
SYSTEM_ID = "SPDXRef-System"


class ImageRecord(Struct):
    """An image of the system and where its package databases are."""

    reference: str  # as the spec names it, resolved (registry/repository:tag)
    digest: str  # its manifest's
    root: str | None = None  # where its files are in the tree (containers, volumes)
    databases: dict[str, Content] = field(default_factory=dict)  # init images: their own


class _Package(Struct, frozen=True):
    manager: str  # deb or apk
    name: str
    version: str
    architecture: str
    distro: str  # e.g. debian-12, or ''

    @property
    def spdx_id(self) -> str:
        return "SPDXRef-" + re.sub(
            r"[^A-Za-z0-9.-]", "-", f"{self.manager}-{self.name}-{self.version}-{self.architecture}"
        )

    def purl(self) -> str:
        namespace = "debian" if self.manager == "deb" else "alpine"
        qualifiers = [f"arch={quote(self.architecture, safe='')}"] if self.architecture else []
        if self.distro:
            qualifiers.append(f"distro={quote(self.distro, safe='')}")
        version = quote(self.version, safe="~+")
        query = ("?" + "&".join(qualifiers)) if qualifiers else ""
        return f"pkg:{self.manager}/{namespace}/{quote(self.name, safe='+')}@{version}{query}"


def write_sbom(tree: Tree, images: list[ImageRecord], epoch: int, path: str) -> None:
    """The document, written at `path` in `tree`."""
    tree.spool.flush()  # (databases may be in the spool: the init images' union)
    packages: dict[str, dict[str, object]] = {}
    relationships: list[dict[str, str]] = []
    system = {
        "SPDXID": SYSTEM_ID,
        "name": "system",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "comment": "the root filesystem osbuilder assembled from the images below",
    }
    seen_images: set[str] = set()
    for record in images:
        image_id = "SPDXRef-Image-" + record.digest.removeprefix("sha256:")[:32]
        if record.digest in seen_images:
            continue
        seen_images.add(record.digest)
        packages[image_id] = _image_package(image_id, record)
        relationships.append(_relationship(SYSTEM_ID, "CONTAINS", image_id))
        for package in _image_contents(tree, record):
            packages.setdefault(package.spdx_id, _deb_or_apk(package))
            relationships.append(_relationship(image_id, "CONTAINS", package.spdx_id))
    body = {
        "packages": [system, *packages.values()],
        "relationships": [
            _relationship("SPDXRef-DOCUMENT", "DESCRIBES", SYSTEM_ID),
            *relationships,
        ],
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "osbuilder system",
        "documentNamespace": NAMESPACE + digest,
        "creationInfo": {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)),
            "creators": [f"Tool: osbuilder-{__version__}"],
        },
        "documentDescribes": [SYSTEM_ID],
        **body,
    }
    data = json_document(document, indent=2)
    tree.put(
        Entry(
            path,
            Kind.FILE,
            0o644,
            mtime=epoch,
            content=tree.spool.write_bytes(data),
            source=SOURCE,
            location="sbom",
        )
    )


def _image_package(spdx_id: str, record: ImageRecord) -> dict[str, object]:
    reference = parse_reference(record.reference)
    repository = f"{reference.registry}/{reference.repository}"
    name = reference.repository.rsplit("/", 1)[-1]
    purl = (
        f"pkg:oci/{quote(name, safe='')}@{quote(record.digest, safe='')}"
        f"?repository_url={quote(repository, safe='/')}"
    )
    if reference.tag:
        purl += f"&tag={quote(reference.tag, safe='')}"
    return {
        "SPDXID": spdx_id,
        "name": repository,
        "versionInfo": reference.tag or record.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": record.digest.split(":")[-1]}],
        "externalRefs": [_purl(purl)],
    }


def _purl(locator: str) -> dict[str, str]:
    return {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": locator,
    }


def _deb_or_apk(package: _Package) -> dict[str, object]:
    return {
        "SPDXID": package.spdx_id,
        "name": package.name,
        "versionInfo": package.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [_purl(package.purl())],
    }


def _relationship(element: str, kind: str, related: str) -> dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}


def _image_contents(tree: Tree, record: ImageRecord) -> list[_Package]:
    """The packages the image's databases list (sorted; none without one)."""
    if record.root is not None:
        prefix = f"{record.root}/" if record.root else ""
        databases = {
            path: entry.content
            for path in (DPKG_STATUS, APK_INSTALLED)
            if (entry := tree.get(prefix + path)) is not None and entry.content is not None
        }
        os_release = tree.get(prefix + "etc/os-release") or tree.get(prefix + "usr/lib/os-release")
    else:  # an init image: its own databases, merged into the root's
        databases, os_release = record.databases, tree.get("etc/os-release")
    distro = _distro(os_release.content) if os_release and os_release.content else "debian"
    found: set[_Package] = set()
    if (status := databases.get(DPKG_STATUS)) is not None:
        found |= _dpkg_packages(status.read_bytes().decode(errors="replace"), distro)
    if (installed := databases.get(APK_INSTALLED)) is not None:
        found |= _apk_packages(installed.read_bytes().decode(errors="replace"))
    return sorted(found, key=lambda p: (p.manager, p.name, p.version, p.architecture))


def _dpkg_packages(text: str, distro: str) -> set[_Package]:
    packages = set()
    for paragraph in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+):[ \t]*(.*)$", paragraph, re.MULTILINE))
        # (the Status's last word is the state: not "config-files" nor "not-installed")
        if "Package" in fields and fields.get("Status", "installed").split()[-1:] == ["installed"]:
            architecture = fields.get("Architecture", "")
            packages.add(
                _Package("deb", fields["Package"], fields.get("Version", ""), architecture, distro)
            )
    return packages


def _apk_packages(text: str) -> set[_Package]:
    packages = set()
    for paragraph in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z]):(.*)$", paragraph, re.MULTILINE))
        if "P" in fields:
            packages.add(_Package("apk", fields["P"], fields.get("V", ""), fields.get("A", ""), ""))
    return packages


def _distro(content: Content) -> str:
    """`debian-12` from an os-release's ID and VERSION_ID; the ID alone without a version."""
    fields = dict(
        re.findall(
            r'^([A-Z_]+)="?([^"\n]*)"?$', content.read_bytes().decode(errors="replace"), re.M
        )
    )
    name = fields.get("ID", "debian")
    return f"{name}-{fields['VERSION_ID']}" if fields.get("VERSION_ID") else name
