"""Spec files given as http(s) URLs, as LinuxKit takes them: fetched, then read like a file
named by its URL (diagnostics say URL:LINE:COL)."""

from __future__ import annotations

from urllib.parse import urlsplit

from osbuilder.errors import UserError

MAX_SPEC_BYTES = 4 << 20  # a spec is a few KB; a URL that streams more is not one
TIMEOUT_SECONDS = 30


def is_url(name: str) -> bool:
    return name.startswith(("http://", "https://"))


def url_stem(url: str) -> str:
    """The name a URL's spec gives outputs: its file name without the extension."""
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


def fetch_spec(url: str) -> bytes:
    """The body of `url` (redirects followed), or a UserError saying why not in one line."""
    import httpx  # (imported here: specs read from files need no HTTP client)

    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=TIMEOUT_SECONDS) as response:
            if response.status_code != 200:
                raise UserError(
                    f"{url}: cannot fetch the spec: HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip()
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_SPEC_BYTES:
                    raise UserError(f"{url}: more than {MAX_SPEC_BYTES >> 20} MiB: not a spec")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise UserError(f"{url}: cannot fetch the spec: {exc}") from None
