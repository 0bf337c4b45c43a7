"""The activity that re-hosts provider outputs in our object store."""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from reelflow.providers.base import Provider
from reelflow.storage import ObjectStore
from reelflow.types import PersistInput, PersistResult, StoredOutput

__all__ = ["PersistActivities", "output_key"]

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_MAX_REDIRECTS = 5


def output_key(*, execution_id: str, job_record_id: str, index: int, extension: str) -> str:
    """Deterministic object key, so a retried persist overwrites rather than duplicates."""
    return f"executions/{execution_id}/{job_record_id}/output-{index}{extension}"


def _content_type(response: httpx.Response, url: str) -> str:
    declared = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or "application/octet-stream"


class PersistActivities:
    """Streams outputs from providers into the object store."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        store: ObjectStore,
        providers: Mapping[str, Provider],
        max_output_bytes: int,
    ) -> None:
        self._http = http
        self._store = store
        self._providers = providers
        self._max_output_bytes = max_output_bytes

    @activity.defn(name="persist_outputs")
    async def persist(self, job: PersistInput) -> PersistResult:
        """Download each output (streamed to a spool file, never whole in memory) and store it."""
        provider = self._providers[job.provider]
        outputs = []
        with tempfile.TemporaryDirectory(prefix="reelflow-") as spool_dir:
            for index, url in enumerate(job.output_urls):
                spool = Path(spool_dir) / f"output-{index}"
                content_type, size, digest = await self._download(url, spool, provider)
                extension = (
                    mimetypes.guess_extension(content_type) or Path(urlsplit(url).path).suffix
                )
                key = output_key(
                    execution_id=job.execution_id,
                    job_record_id=job.job_record_id,
                    index=index,
                    extension=extension,
                )
                public_url = await self._store.put_file(
                    key=key, path=spool, content_type=content_type
                )
                logger.info("[AsyncJobCompletion] Uploaded to CDN: %s", public_url)
                outputs.append(
                    StoredOutput(
                        url=public_url,
                        key=key,
                        content_type=content_type,
                        bytes=size,
                        sha256=digest,
                    )
                )
        return PersistResult(outputs)

    async def _open(self, url: str, provider: Provider) -> httpx.Response:
        """GET `url`, following redirects by hand so each hop gets only its own headers.

        httpx keeps custom headers across a redirect to another host; a provider's download
        key (Veo's) must go to the provider's host alone, never to where it redirects.
        """
        for _ in range(_MAX_REDIRECTS + 1):
            request = self._http.build_request("GET", url, headers=provider.download_headers(url))
            response = await self._http.send(request, stream=True, follow_redirects=False)
            if not response.is_redirect:
                return response
            await response.aclose()
            url = str(response.url.join(response.headers["location"]))
        raise ApplicationError(
            f"more than {_MAX_REDIRECTS} redirects", type="DownloadFailed", non_retryable=True
        )

    async def _download(self, url: str, spool: Path, provider: Provider) -> tuple[str, int, str]:
        digest = hashlib.sha256()
        size = 0
        try:
            response = await self._open(url, provider)
            try:
                if response.status_code in (403, 404, 410):
                    raise ApplicationError(
                        f"output {url} is gone (HTTP {response.status_code}); the provider"
                        " deletes outputs after a while",
                        type="OutputExpired",
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
                        if size > self._max_output_bytes:
                            raise ApplicationError(
                                f"output {url} is larger than {self._max_output_bytes} bytes",
                                type="OutputTooLarge",
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
        return content_type, size, digest.hexdigest()
