"""Uploading blobs to a registry: cross-repository mount, monolithic or chunked PUT.

The distribution spec's upload is a session: POST opens it (or mounts the
blob from another repository of the same registry and is done), then either
one PUT with the whole body, or PATCHes of chunks and a closing PUT naming
the digest. A chunk that fails is resumed where the session says it stopped (a GET of
the session); a session that fails otherwise is retried from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from msgspec import Struct

from osbuilder.errors import ExternalError, UserError
from osbuilder.oci.httpx_support import raise_for_status
from osbuilder.oci.model import Descriptor
from osbuilder.oci.progress import NullProgress, Progress
from osbuilder.oci.reference import ImageReference
from osbuilder.oci.registry import Endpoint, RegistryClient

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_SESSION_ATTEMPTS = 3


def upload_blob(
    client: RegistryClient,
    ref: ImageReference,
    blob: Descriptor,
    path: Path,
    *,
    mount_from: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Upload the file at `path` as `blob` to `ref`'s repository: 'mounted' or 'uploaded'."""
    progress = progress or NullProgress()
    endpoint = client.origin(ref.registry)
    what = f"upload {blob.digest[:19]} to {ref.repository} at {endpoint.base_url}"
    start = endpoint.url(f"{ref.repository}/blobs/uploads/")
    params = {"mount": blob.digest, "from": mount_from} if mount_from else {}
    for attempt in range(_SESSION_ATTEMPTS):
        with client.send("POST", httpx.URL(start, params=params), endpoint, what=what) as response:
            if response.status_code == 201 and mount_from:
                return "mounted"
            raise_for_status(response, what, expected=(202,))
            location = upload_location(response, endpoint)
        progress.begin(blob.digest, f"{ref.repository}@{blob.digest[7:19]}", blob.size)
        session = _Session(client, endpoint, blob, path, what, progress)
        try:
            if blob.size <= client.options.chunk_size:
                session.put_whole(location)
            else:
                session.put_chunks(location)
        except ExternalError:
            progress.end(blob.digest, "failed")
            if attempt + 1 == _SESSION_ATTEMPTS:
                raise
            continue
        progress.end(blob.digest, "pushed")
        return "uploaded"
    raise AssertionError("unreachable")  # pragma: no cover


class _Session(Struct):
    """One upload session of `blob` from the file at `path`, once POST has opened it."""

    client: RegistryClient
    endpoint: Endpoint
    blob: Descriptor
    path: Path
    what: str  # the upload, for messages
    progress: Progress

    def put_whole(self, location: httpx.URL) -> None:
        def body() -> Iterator[bytes]:
            self.progress.restart(self.blob.digest, 0)
            with self.path.open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    self.progress.advance(self.blob.digest, len(chunk))
                    yield chunk

        url = location.copy_merge_params({"digest": self.blob.digest})
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(self.blob.size),
        }
        with self.client.send(
            "PUT", url, self.endpoint, headers=headers, body=body, what=self.what
        ) as response:
            raise_for_status(response, self.what, expected=(201, 204))

    def put_chunks(self, location: httpx.URL) -> None:
        size = self.client.options.chunk_size
        resumes = 0
        with self.path.open("rb") as stream:
            offset = 0
            while offset < self.blob.size:
                stream.seek(offset)
                chunk = stream.read(size)
                if not chunk:
                    raise UserError(f"{self.path}: the file shrank while being uploaded")
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Length": str(len(chunk)),
                }
                # A PATCH is not idempotent: a retried one could append twice. After a failure
                # the session says how much it holds (GET on its location), and the upload
                # goes on from there; a session that cannot say restarts from the start.
                try:
                    with self.client.send(
                        "PATCH",
                        location,
                        self.endpoint,
                        headers=headers,
                        body=_const(chunk),
                        what=self.what,
                        retries=0,
                    ) as response:
                        raise_for_status(response, self.what, expected=(202, 204))
                        location = upload_location(response, self.endpoint)
                except ExternalError as exc:
                    resumes += 1
                    status = (
                        upload_status(self.client, self.endpoint, location, self.what)
                        if resumes <= self.client.options.retries
                        else None
                    )
                    # The session holds what it held before this chunk, or this chunk too;
                    # anything else is not to be trusted. (distribution answers `0-0` for an
                    # empty session as for one holding 1 byte: a chunk is never 1 byte.)
                    held = 0 if status is not None and offset == 0 and status[0] == 1 else None
                    if (
                        status is not None
                        and held is None
                        and status[0] in (offset, offset + len(chunk))
                    ):
                        held = status[0]
                    if status is None or held is None:
                        raise
                    offset, location = held, status[1]
                    log.info("%s: %s; resuming at byte %d", self.what, exc, offset)
                    self.progress.restart(self.blob.digest, offset)
                    self.client.pause(resumes - 1, None, self.what, str(exc))
                    continue
                offset += len(chunk)
                self.progress.advance(self.blob.digest, len(chunk))
        url = location.copy_merge_params({"digest": self.blob.digest})
        with self.client.send(
            "PUT", url, self.endpoint, headers={"Content-Length": "0"}, what=self.what
        ) as response:
            raise_for_status(response, self.what, expected=(201, 204))


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def upload_status(
    client: RegistryClient, endpoint: Endpoint, location: httpx.URL, what: str
) -> tuple[int, httpx.URL] | None:
    """How many bytes the upload session at `location` holds, and where it goes on (the
    distribution spec's GET of an upload: 204 with `Range: 0-LAST`); None when it is gone."""
    try:
        with client.send("GET", location, endpoint, what=f"{what} (status)") as response:
            if response.status_code != 204:
                return None
            held = response.headers.get("range", "")
            start, sep, last = held.partition("-")
            if not sep or start != "0" or not last.isdigit():
                return None
            return int(last) + 1, upload_location(response, endpoint)
    except (ExternalError, UserError):
        return None


def upload_location(response: httpx.Response, endpoint: Endpoint) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise UserError(f"{endpoint.base_url}: upload answer has no Location header")
    return httpx.URL(endpoint.base_url).join(location)
