"""The activities behind `pipeline:concat` and `pipeline:thumbnail`: local media work with PyAV.

Each activity fetches its inputs into a temporary directory (from our own store when the URL is
one of its objects, else over HTTP: only from the allowed hosts, only videos, with a size cap;
inputs can come straight from a user's plan, see `reelflow.netguard`), runs the `reelflow.media`
function in a worker thread while heartbeating, and stores the result under a deterministic key,
so a retry overwrites rather than duplicates.

Failures:
    InvalidMedia    an input is not a usable video, or a parameter is wrong (not retryable)
    InputExpired    an input URL is gone, from the web or from our store (not retryable)
    InputTooLarge   an input is larger than the configured cap (not retryable)
    DownloadRefused an input URL, a redirect or its address is not allowed, or the input is not
                    served as a video (not retryable)
    DownloadFailed  see `activities.downloads`
    other errors    storage and network trouble: retried by Temporal
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal, TypeVar

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.downloads import download
from activities.persist import output_key
from reelflow import media
from reelflow.netguard import VIDEO, HostAllowlist, redact_url
from reelflow.storage import ObjectNotFound, ObjectStore
from reelflow.types import MediaJobInput, PersistResult, StoredOutput

__all__ = ["HEARTBEAT_INTERVAL_S", "MediaActivities"]

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
"""How often a running media job heartbeats (its heartbeat timeout must be longer)."""

_T = TypeVar("_T")

_IMAGE_TYPES: dict[str, tuple[Literal["jpeg", "png"], str, str]] = {
    # param value: (media format, extension, content type)
    "jpeg": ("jpeg", ".jpg", "image/jpeg"),
    "png": ("png", ".png", "image/png"),
}


class _Abandoned(Exception):
    """Raised in the worker thread to stop media work whose activity was cancelled."""


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidMedia", non_retryable=True)


class MediaActivities:
    """Concatenates videos and takes thumbnails, storing the results in the object store."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        store: ObjectStore,
        allowed_hosts: HostAllowlist,
        max_input_bytes: int,
    ) -> None:
        """Create the activities.

        Args:
            http: Client for inputs that are not in our store:
                `reelflow.netguard.guarded_client`, which connects only to public addresses (or
                explicitly allowed origins) and does not retry.
            store: Where inputs of our own are read from and results are written to.
            allowed_hosts: Where inputs that are not in our store may be downloaded from.
            max_input_bytes: Inputs larger than this are refused rather than filling the disk.
        """
        self._http = http
        self._store = store
        self._allowed_hosts = allowed_hosts
        self._max_input_bytes = max_input_bytes

    @activity.defn(name="concat_media")
    async def concat(self, job: MediaJobInput) -> PersistResult:
        """Join `job.input_urls` end to end into one MP4 (see `reelflow.media.concat`)."""
        if not job.input_urls:
            raise _invalid("concat needs at least one input video")
        with tempfile.TemporaryDirectory(prefix="reelflow-media-") as work_dir:
            work = Path(work_dir)
            inputs = await self._fetch_all(job.input_urls, work)
            output = work / "output-0.mp4"
            info = await self._run(
                job, lambda progress: media.concat(inputs, output, progress=progress)
            )
            stored = await self._store_output(
                job, output, extension=".mp4", content_type="video/mp4"
            )
        return PersistResult(
            [
                replace(
                    stored,
                    duration_s=info.duration_s,
                    width=info.width,
                    height=info.height,
                    fps=info.fps,
                )
            ]
        )

    @activity.defn(name="thumbnail_media")
    async def thumbnail(self, job: MediaJobInput) -> PersistResult:
        """Save a frame of the one input as an image.

        Params: `atSeconds` (number >= 0, default 0; past the end gives the last frame) and
        `format` (`jpeg`, the default, or `png`).
        """
        if len(job.input_urls) != 1:
            raise _invalid(f"thumbnail takes one input video, got {len(job.input_urls)}")
        at_seconds = _seconds(job.params.get("atSeconds", 0))
        image_format = job.params.get("format", "jpeg")
        if not isinstance(image_format, str) or image_format not in _IMAGE_TYPES:
            raise _invalid(f"thumbnail format must be 'jpeg' or 'png', not {image_format!r}")
        kind, extension, content_type = _IMAGE_TYPES[image_format]
        with tempfile.TemporaryDirectory(prefix="reelflow-media-") as work_dir:
            work = Path(work_dir)
            (source,) = await self._fetch_all(job.input_urls, work)
            output = work / f"output-0{extension}"
            info = await self._run(
                job,
                lambda _progress: media.thumbnail(
                    source, output, at_seconds=at_seconds, format=kind
                ),
            )
            stored = await self._store_output(
                job, output, extension=extension, content_type=content_type
            )
        return PersistResult([replace(stored, width=info.width, height=info.height)])

    async def _fetch_all(self, urls: list[str], work: Path) -> list[Path]:
        """Local copies of `urls`, in order; a clip used twice is fetched once."""
        paths: dict[str, Path] = {}
        for url in urls:
            if url not in paths:
                paths[url] = await self._fetch(url, work / f"input-{len(paths)}")
        return [paths[url] for url in urls]

    async def _fetch(self, url: str, path: Path) -> Path:
        key = self._store.key_for(url)
        if key is None:
            await download(
                self._http,
                url,
                path,
                allowed=self._allowed_hosts,
                accept=VIDEO,
                max_bytes=self._max_input_bytes,
                noun="input",
            )
            return path
        shown = redact_url(url)
        try:
            await self._store.download_to(key=key, path=path)
        except ObjectNotFound:
            raise ApplicationError(
                f"input {shown} is not in the object store",
                type="InputExpired",
                non_retryable=True,
            ) from None
        size = path.stat().st_size
        if size > self._max_input_bytes:
            raise ApplicationError(
                f"input {shown} is larger than {self._max_input_bytes} bytes",
                type="InputTooLarge",
                non_retryable=True,
            )
        activity.heartbeat(size)
        return path

    async def _run(self, job: MediaJobInput, work: Callable[[media.Progress], _T]) -> _T:
        """Run `work` in a thread, heartbeating meanwhile; cancellation stops it at its next
        progress report."""
        stop = threading.Event()
        done = 0.0

        def progress(seconds: float) -> None:
            nonlocal done
            if stop.is_set():
                raise _Abandoned
            done = seconds

        task = asyncio.ensure_future(asyncio.to_thread(work, progress))
        try:
            while True:
                finished, _ = await asyncio.wait({task}, timeout=HEARTBEAT_INTERVAL_S)
                if finished:
                    return task.result()
                activity.heartbeat(f"{done:.1f} s of output written")
        except media.MediaError as error:
            message = str(error)
            if error.input_index is not None:
                message = f"{message} ({redact_url(job.input_urls[error.input_index])})"
            raise _invalid(message) from None
        except asyncio.CancelledError:
            # The thread cannot be killed: ask it to stop, and let it finish before the
            # temporary directory it works in is deleted.
            stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait({task})
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log the expected _Abandoned
            raise

    async def _store_output(
        self, job: MediaJobInput, path: Path, *, extension: str, content_type: str
    ) -> StoredOutput:
        key = output_key(
            execution_id=job.execution_id,
            job_record_id=job.job_record_id,
            index=0,
            extension=extension,
        )
        digest = await asyncio.to_thread(_sha256, path)
        url = await self._store.put_file(key=key, path=path, content_type=content_type)
        logger.info("[AsyncJobCompletion] Uploaded to CDN: %s", url)
        return StoredOutput(
            url=url,
            key=key,
            content_type=content_type,
            bytes=path.stat().st_size,
            sha256=digest,
        )


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"atSeconds must be a number of seconds, not {value!r}")
    return float(value)


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
