"""Streaming HTTP downloads into local spool files, for activities that fetch media.

A download never holds the body in memory: it is written to the spool file chunk by chunk, hashed
on the way and cut off past a size cap. Redirects are followed by hand so each hop gets only the
headers meant for its own host. Failures are Temporal `ApplicationError`s, non-retryable when a
retry cannot help (gone, too large, a 4xx other than 429, too many redirects):

    DownloadFailed     network error, 5xx or 429 (retryable); other 4xx, redirect loop (not)
    <Noun>Expired      HTTP 403, 404 or 410: the object is gone (e.g. `OutputExpired`)
    <Noun>TooLarge     the body is larger than the cap (e.g. `OutputTooLarge`)
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

__all__ = ["MAX_REDIRECTS", "Download", "HeadersFor", "download"]

MAX_REDIRECTS = 5
"""Redirect hops followed before giving up."""

_CHUNK = 1024 * 1024

HeadersFor = Callable[[str], Mapping[str, str]]
"""Headers to send to a URL (a provider's `download_headers`), asked again at every hop."""


@dataclass(frozen=True)
class Download:
    """A body that was written to a spool file."""

    content_type: str
    """MIME type: the declared one, else guessed from the URL's path."""
    size: int
    """Bytes written."""
    sha256: str
    """Hex SHA-256 of the body."""


def _no_headers(url: str) -> Mapping[str, str]:
    return {}


async def download(
    http: httpx.AsyncClient,
    url: str,
    spool: Path,
    *,
    max_bytes: int,
    headers_for: HeadersFor = _no_headers,
    noun: str = "output",
    gone_hint: str = "",
) -> Download:
    """Stream `url` into `spool`, heartbeating after every chunk.

    Must run inside an activity (it heartbeats).

    Args:
        http: The client; it must not follow redirects or retry on its own.
        url: What to fetch.
        spool: File to write; replaced if it exists.
        max_bytes: Bodies larger than this are refused.
        headers_for: Headers for each hop's URL, e.g. an API key for the provider's host only.
        noun: What the URL is, for messages and error types (`output` → `OutputExpired`).
        gone_hint: Appended to the message when the object is gone.

    Raises:
        ApplicationError: see the module docstring.
    """
    digest = hashlib.sha256()
    size = 0
    kind = noun[:1].upper() + noun[1:]
    try:
        response = await _open(http, url, headers_for)
        try:
            if response.status_code in (403, 404, 410):
                raise ApplicationError(
                    f"{noun} {url} is gone (HTTP {response.status_code}){gone_hint}",
                    type=f"{kind}Expired",
                    non_retryable=True,
                )
            if response.status_code >= 400:
                # 5xx and throttling are worth retrying; other 4xx will not get better.
                raise ApplicationError(
                    f"downloading {url} failed with HTTP {response.status_code}",
                    type="DownloadFailed",
                    non_retryable=response.status_code < 500 and response.status_code != 429,
                )
            content_type = _content_type(response, url)
            with spool.open("wb") as file:
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ApplicationError(
                            f"{noun} {url} is larger than {max_bytes} bytes",
                            type=f"{kind}TooLarge",
                            non_retryable=True,
                        )
                    digest.update(chunk)
                    file.write(chunk)
                    activity.heartbeat(size)
        finally:
            await response.aclose()
    except httpx.HTTPError as error:
        raise ApplicationError(
            f"downloading {url} failed: {type(error).__name__}", type="DownloadFailed"
        ) from None
    return Download(content_type=content_type, size=size, sha256=digest.hexdigest())


async def _open(http: httpx.AsyncClient, url: str, headers_for: HeadersFor) -> httpx.Response:
    """GET `url`, following redirects by hand so each hop gets only its own headers.

    httpx keeps custom headers across a redirect to another host; a provider's download key
    (Veo's) must go to the provider's host alone, never to where it redirects.
    """
    for _ in range(MAX_REDIRECTS + 1):
        request = http.build_request("GET", url, headers=headers_for(url))
        response = await http.send(request, stream=True, follow_redirects=False)
        if not response.is_redirect:
            return response
        await response.aclose()
        url = str(response.url.join(response.headers["location"]))
    raise ApplicationError(
        f"more than {MAX_REDIRECTS} redirects", type="DownloadFailed", non_retryable=True
    )


def _content_type(response: httpx.Response, url: str) -> str:
    declared = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or "application/octet-stream"
