"""Uploading a built image to OpenStack's image service (Glance), through openstacksdk.

The cloud is found as every OpenStack client finds it: `--cloud NAME` (or $OS_CLOUD) in
clouds.yaml, else the OS_* variables. The image's disk format comes from its contents
(osbuilder/media.py), not its name: qcow2, raw or iso; an EFI image (a GPT) also gets
`hw_firmware_type=uefi`, which tells Nova to boot it with UEFI firmware. openstacksdk
uploads the file streamed, waits until Glance says the image is active and checks the
checksum Glance computed. An active image of the same name, contents and properties is
reused rather than uploaded twice (Glance names need not be unique: any other upload
makes a new image). LinuxKit's `push openstack` names the format by the file's extension
and ignores upload errors; here a failure is one clear line.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import openstack
from keystoneauth1 import exceptions as auth_errors
from msgspec import Struct, field
from openstack import exceptions as sdk_errors

from osbuilder.errors import ExternalError, UserError
from osbuilder.media import MediaBoot

log = logging.getLogger(__name__)

# medium -> Glance's disk_format
DISK_FORMATS = {"iso": "iso", "raw": "raw", "qcow2": "qcow2", "vhd": "vhd", "vmdk": "vmdk"}
UPLOAD_TIMEOUT = 3600.0  # seconds for Glance to make an uploaded image active
_CHUNK = 1 << 20


class GlanceImage(Struct, frozen=True):
    id: str
    name: str
    status: str
    size: int
    disk_format: str
    checksum: str  # Glance's md5 of the data
    properties: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "size": self.size,
            "disk_format": self.disk_format,
            "checksum": self.checksum,
            "properties": self.properties,
        }


def image_properties(medium: MediaBoot, extra: dict[str, str]) -> dict[str, str]:
    """The Glance properties for `medium`: what Nova needs to boot it, then `extra`."""
    properties = {"hw_firmware_type": "uefi"} if medium.firmware == "efi" else {}
    return {**properties, **extra}


def push_image(
    path: Path,
    *,
    name: str,
    cloud: str | None,
    properties: dict[str, str],
    visibility: str | None = None,
    timeout: float = UPLOAD_TIMEOUT,
) -> GlanceImage:
    """Upload the image file `path` to Glance as `name`; the image once active.

    An active image of that name with the same contents and properties is reused.
    """
    if not path.is_file():
        raise UserError(f"{path}: no such file; build it first (osbuilder build -f qcow2-bios ...)")
    medium = MediaBoot.from_file(path)
    wanted = image_properties(medium, properties)
    md5, sha256 = _digests(path)

    _quiet_libraries()

    extra: dict[str, Any] = {"visibility": visibility} if visibility else {}
    try:
        connection = openstack.connect(cloud=cloud)
        image = _same_image(connection, name, sha256, wanted)
        if image is None:
            log.info("uploading %s to %s", path, connection.image.get_endpoint())
            try:
                image = connection.image.create_image(
                    name,
                    filename=str(path),
                    md5=md5,
                    sha256=sha256,
                    disk_format=DISK_FORMATS[medium.medium],
                    container_format="bare",
                    allow_duplicates=True,  # (whether one is the same is decided above)
                    wait=True,
                    timeout=timeout,
                    validate_checksum=True,
                    meta=wanted,
                    **extra,
                )
            except KeyboardInterrupt:
                # openstacksdk deletes an image whose upload failed, but not one whose
                # upload was interrupted (Ctrl-C, SIGTERM): it would stay, queued, forever.
                _remove_unfinished(connection, name, sha256)
                raise
        else:
            log.info("%s is already there as image %s", path, image.id)
    except sdk_errors.ConfigException as exc:
        raise UserError(f"OpenStack configuration: {_one_line(exc)}{_CONFIG_HINT}") from None
    except auth_errors.MissingRequiredOptions as exc:
        raise UserError(f"OpenStack credentials: {_one_line(exc)}{_CONFIG_HINT}") from None
    except auth_errors.Unauthorized as exc:
        raise UserError(
            f"OpenStack credentials: {_one_line(exc)} (check the user, password and project "
            "the cloud's configuration gives)"
        ) from None
    except (sdk_errors.SDKException, auth_errors.ClientException) as exc:
        raise ExternalError(f"OpenStack: {_one_line(exc)}") from None
    if image.status != "active":
        raise ExternalError(f"OpenStack: image {image.id} is {image.status}, not active")
    return GlanceImage(
        id=image.id,
        name=image.name,
        status=image.status,
        size=int(image.size or 0),
        disk_format=image.disk_format,
        checksum=image.checksum or "",
        properties={key: str(_property(image, key)) for key in wanted},
    )


def _quiet_libraries() -> None:
    """Leave the libraries' warnings (keystoneauth's on an unreachable cloud, say) to -v:
    what went wrong is said once, in the error osbuilder raises."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        for name in ("keystoneauth", "openstack"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _digests(path: Path) -> tuple[str, str]:
    """The file's md5 and sha256 (what openstacksdk records on the image), in one read."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def _same_image(connection: Any, name: str, sha256: str, wanted: dict[str, str]) -> Any:
    """An active image `name` of these contents and properties, if the cloud has one."""
    for image in connection.image.images(name=name):
        if (
            image.status == "active"
            and _property(image, "owner_specified.openstack.sha256") == sha256
            and all(_property(image, key) == value for key, value in wanted.items())
        ):
            return image
    return None


def _remove_unfinished(connection: Any, name: str, sha256: str) -> None:
    """Delete the images `name` of these contents whose upload did not finish."""
    for image in connection.image.images(name=name):
        if (
            image.status in _UNFINISHED
            and _property(image, "owner_specified.openstack.sha256") == sha256
        ):
            log.warning("removing image %s, whose upload was interrupted", image.id)
            connection.image.delete_image(image, ignore_missing=True)


_UNFINISHED = frozenset({"queued", "saving", "uploading", "importing"})


def _property(image: Any, key: str) -> Any:
    """An image property, whether openstacksdk knows it as an attribute or not."""
    extra = image.properties or {}
    return extra[key] if key in extra else getattr(image, key, None)


_CONFIG_HINT = (
    " (name a cloud of clouds.yaml with --cloud or OS_CLOUD, or set OS_AUTH_URL and the "
    "other OS_* variables)"
)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
