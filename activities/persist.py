"""The activity that re-hosts provider outputs in our object store.

Outputs are fetched with `activities.downloads.download`: only from the provider's allowed hosts
(`reelflow.netguard`), only videos and images, and no more than `max_output_bytes` each.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.downloads import download
from activities.records import RecordActivities
from reelflow.media import MediaError, MediaInfo, probe
from reelflow.metrics import BYTES_REHOSTED, PROVIDER_TO_STORED_SECONDS
from reelflow.netguard import VIDEO_OR_IMAGE, HostAllowlist, redact_url
from reelflow.providers.base import Provider
from reelflow.storage import ObjectStore
from reelflow.types import JobStatus, JobUpdate, PersistInput, PersistResult, StoredOutput

__all__ = ["PersistActivities", "output_key"]

logger = logging.getLogger(__name__)


def output_key(*, execution_id: str, job_record_id: str, index: int, extension: str) -> str:
    """Deterministic object key, so a retried persist overwrites rather than duplicates."""
    return f"executions/{execution_id}/{job_record_id}/output-{index}{extension}"


class PersistActivities:
    """Streams outputs from providers into the object store."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        store: ObjectStore,
        providers: Mapping[str, Provider],
        allowed_hosts: Mapping[str, HostAllowlist],
        max_output_bytes: int,
        records: RecordActivities,
    ) -> None:
        """Create the activity.

        Args:
            http: Client for the downloads: `reelflow.netguard.guarded_client`, which connects
                only to public addresses (or explicitly allowed origins) and does not retry.
            store: Where outputs are stored.
            providers: The adapters, for the headers their output URLs need.
            allowed_hosts: Each provider's allowlist for its output URLs and their redirects;
                a provider without one may download nothing.
            max_output_bytes: Outputs larger than this are refused rather than filling the disk.
            records: Writes the job's completion once its outputs are stored.
        """
        self._http = http
        self._store = store
        self._providers = providers
        self._allowed_hosts = allowed_hosts
        self._max_output_bytes = max_output_bytes
        self._records = records

    @activity.defn(name="persist_outputs")
    async def persist(self, job: PersistInput) -> PersistResult:
        """Download each output (streamed to a spool file, never whole in memory), store it and
        record the job as completed.

        The completion is written here rather than by the workflow afterwards: the job shows
        as completed one workflow task sooner, and a retry after the write rewrites the same
        row with the same outputs.
        """
        provider = self._providers[job.provider]
        allowed = self._allowed_hosts.get(job.provider) or HostAllowlist(f"{job.provider} outputs")
        outputs = []
        with tempfile.TemporaryDirectory(prefix="reelflow-") as spool_dir:
            for index, url in enumerate(job.output_urls):
                spool = Path(spool_dir) / f"output-{index}"
                fetched = await download(
                    self._http,
                    url,
                    spool,
                    allowed=allowed,
                    accept=VIDEO_OR_IMAGE,
                    max_bytes=self._max_output_bytes,
                    headers_for=provider.download_headers,
                    gone_hint="; the provider deletes outputs after a while",
                )
                content_type = fetched.content_type
                info = await self._probe(spool, url) if content_type.startswith("video/") else None
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
                    key=key, path=spool, content_type=content_type, consume=True
                )
                logger.info("[AsyncJobCompletion] Uploaded to CDN: %s", public_url)
                BYTES_REHOSTED.labels(job.provider).inc(fetched.size)
                outputs.append(
                    StoredOutput(
                        url=public_url,
                        key=key,
                        content_type=content_type,
                        bytes=fetched.size,
                        sha256=fetched.sha256,
                        duration_s=info.duration_s if info else None,
                        width=info.width if info else None,
                        height=info.height if info else None,
                        fps=info.fps if info else None,
                    )
                )
        await self._records.write_job_update(
            JobUpdate(
                job.job_record_id,
                JobStatus.COMPLETED,
                provider_status=job.provider_status,
                outputs=outputs,
                compute_seconds=job.compute_seconds,
            )
        )
        # The workflow schedules this activity as soon as it learns that the provider finished
        # (`scheduled_time` is the first attempt's): from then to now is our share of the wait.
        waited = datetime.now(UTC) - activity.info().scheduled_time
        PROVIDER_TO_STORED_SECONDS.labels(job.provider).observe(max(waited.total_seconds(), 0.0))
        return PersistResult(outputs)

    @staticmethod
    async def _probe(spool: Path, url: str) -> MediaInfo:
        try:
            return await asyncio.to_thread(probe, spool)
        except MediaError as error:
            # A video that does not open is no output; storing it would only defer the failure.
            raise ApplicationError(
                f"the provider's output {redact_url(url)} is not a playable video: {error}",
                type="InvalidOutput",
                non_retryable=True,
            ) from None
