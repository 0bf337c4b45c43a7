"""Streaming HTTP downloads into local spool files, for activities that fetch media.

A download goes only where its `HostAllowlist` allows, hop by hop, through the guarded client
(`reelflow.netguard`: public addresses only, checked at connection time), and never holds the
body in memory: it is written to the spool file chunk by chunk, hashed on the way and cut off
past a size cap (refused up front when `Content-Length` already says so). Its content type is
checked before anything is written. Redirects are followed by hand so each hop gets only the
headers meant for its own host. Messages never show a URL's query string (presigned signatures)
or credentials. Failures are Temporal `ApplicationError`s, non-retryable when a retry cannot
help:

    DownloadRefused    the URL, a redirect, the address it resolves to or the content type
                       breaks the download policy (not retryable)
    DownloadFailed     network error, 5xx or 429 (retryable); other 4xx or non-2xx, more than
                       `MAX_REDIRECTS` redirects (not)
    <Noun>Expired      HTTP 403, 404 or 410: the object is gone (e.g. `OutputExpired`)
    <Noun>TooLarge     the body is larger than the cap (e.g. `OutputTooLarge`)
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from reelflow.netguard import (
    MAX_REDIRECTS,
    ContentTypes,
    DownloadRefused,
    HeadersFor,
    HostAllowlist,
    check_content_type,
    iter_capped,
    open_checked,
    redact_url,
)

__all__ = ["MAX_REDIRECTS", "Download", "HeadersFor", "download"]

_HEARTBEAT_EVERY_S = 1.0
_BATCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Download:
    """A body that was written to a spool file."""

    content_type: str
    """MIME type: the declared one, else guessed from the URL's path."""
    size: int
    """Bytes written."""
    sha256: str
    """Hex SHA-256 of the body."""


def _no_headers(url: str) -> dict[str, str]:
    return {}


async def download(
    http: httpx.AsyncClient,
    url: str,
    spool: Path,
    *,
    allowed: HostAllowlist,
    accept: ContentTypes,
    max_bytes: int,
    headers_for: HeadersFor = _no_headers,
    noun: str = "output",
    gone_hint: str = "",
) -> Download:
    """Stream `url` into `spool`, heartbeating as it goes.

    Must run inside an activity (it heartbeats).

    Args:
        http: The client: `reelflow.netguard.guarded_client`, which checks the addresses it
            connects to and does not follow redirects or retry on its own.
        url: What to fetch.
        spool: File to write; replaced if it exists.
        allowed: Where this kind of download may go, redirects included.
        accept: The content types this kind of download takes.
        max_bytes: Bodies larger than this are refused.
        headers_for: Headers for each hop's URL, e.g. an API key for the provider's host only.
        noun: What the URL is, for messages and error types (`output` → `OutputExpired`).
        gone_hint: Appended to the message when the object is gone.

    Raises:
        ApplicationError: see the module docstring.
    """
    shown = redact_url(url)
    kind = noun[:1].upper() + noun[1:]
    try:
        async with open_checked(
            http, url, allowed=allowed, max_bytes=max_bytes, headers_for=headers_for
        ) as response:
            status = response.status_code
            if status in (403, 404, 410):
                raise ApplicationError(
                    f"{noun} {shown} is gone (HTTP {status}){gone_hint}",
                    type=f"{kind}Expired",
                    non_retryable=True,
                )
            if not response.is_success:
                # 5xx and throttling are worth retrying; other statuses will not get better.
                raise ApplicationError(
                    f"downloading {shown} failed with HTTP {status}",
                    type="DownloadFailed",
                    non_retryable=status < 500 and status != 429,
                )
            content_type = check_content_type(response, url, accept)
            with spool.open("wb") as file:
                writer = _SpoolWriter(file)
                try:
                    last_beat = 0.0
                    async for chunk in iter_capped(response, max_bytes=max_bytes, url=url):
                        await writer.add(chunk)
                        # The SDK sends at most one heartbeat per interval anyway; calling it
                        # for every chunk only costs CPU.
                        now = time.monotonic()
                        if now - last_beat >= _HEARTBEAT_EVERY_S:
                            activity.heartbeat(writer.size)
                            last_beat = now
                    sha256 = await writer.finish()
                finally:
                    await writer.settle()
    except DownloadRefused as refused:
        raise _refusal(refused, noun=noun, kind=kind, shown=shown) from None
    except httpx.HTTPError as error:
        raise ApplicationError(
            f"downloading {shown} failed: {type(error).__name__}", type="DownloadFailed"
        ) from None
    return Download(content_type=content_type, size=writer.size, sha256=sha256)


class _SpoolWriter:
    """Hashes and writes a body in a worker thread while the event loop reads what follows.

    Chunks are handed over in batches of `_BATCH_BYTES`, one batch in the thread at a time, so
    no more than two batches are ever held in memory, however big the body.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._digest = hashlib.sha256()
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._writing: asyncio.Future[None] | None = None
        self.size = 0
        """Bytes received so far."""

    async def add(self, chunk: bytes) -> None:
        """Take the next chunk of the body."""
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        self.size += len(chunk)
        if self._batch_bytes >= _BATCH_BYTES:
            await self._hand_over()

    async def finish(self) -> str:
        """Write what is left; the body's hex SHA-256."""
        await self._hand_over()
        await self.settle()
        return self._digest.hexdigest()

    async def settle(self) -> None:
        """Wait for the batch in the thread, if any: the file must not close under it."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _hand_over(self) -> None:
        await self.settle()
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._writing = asyncio.get_running_loop().run_in_executor(None, self._write, batch)

    def _write(self, batch: list[bytes]) -> None:
        for chunk in batch:
            self._digest.update(chunk)
            self._file.write(chunk)


def _refusal(refused: DownloadRefused, *, noun: str, kind: str, shown: str) -> ApplicationError:
    if refused.rule == "size":
        return ApplicationError(
            f"{noun} {shown} is {refused.reason}", type=f"{kind}TooLarge", non_retryable=True
        )
    if refused.rule == "redirects":
        return ApplicationError(str(refused), type="DownloadFailed", non_retryable=True)
    return ApplicationError(str(refused), type="DownloadRefused", non_retryable=True)
