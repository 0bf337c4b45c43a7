"""Receiving provider webhooks: verify, look the job up, signal its workflow. No downloads."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.providers.base import Provider
from reelflow.temporal import job_workflow_id
from workflows.provider_job import ProviderJobWorkflow

__all__ = ["UnknownJob", "WebhookOutcome", "receive_webhook"]

logger = logging.getLogger(__name__)


class UnknownJob(Exception):
    """No job has this record id (or its provider is not configured here)."""


class WebhookOutcome(StrEnum):
    """What became of an accepted webhook."""

    SIGNALLED = "signalled"
    """A terminal state, passed to the job's workflow."""
    PROGRESS = "progress"
    """A progress update, written to the job's row."""
    ALREADY_FINISHED = "already_finished"
    """The job's workflow has already closed; nothing to do."""
    UNTRACKED = "untracked"
    """Genuine, but about a provider job other than the one this job record tracks."""


async def receive_webhook(
    *,
    db: Database,
    temporal: Client,
    providers: Mapping[str, Provider],
    job_record_id: str,
    headers: Mapping[str, str],
    body: bytes,
) -> WebhookOutcome:
    """Handle one provider callback for a job.

    Raises:
        UnknownJob: there is no such job.
        WebhookVerificationError: the signature or timestamp is not acceptable.
    """
    async with db.session() as session:
        job = await repository.get_job(session=session, job_record_id=job_record_id)
    provider = providers.get(job.provider or "") if job is not None else None
    if job is None or provider is None:
        raise UnknownJob(job_record_id)
    # Nothing in the body is trusted, not even to log, before this line.
    snapshot = await provider.verify_webhook(headers, body)
    logger.info(
        "[Webhook] Received webhook for job %s, model %s (%s)",
        job_record_id,
        job.model_id,
        snapshot.provider_status,
    )
    if job.provider_job_id is not None and snapshot.provider_job_id != job.provider_job_id:
        # Signed by the provider, but not about this job's provider job: a duplicate created by
        # a retried start, or a delivery replayed at another job's URL. It must not count.
        logger.warning(
            "[Webhook] Job %s tracks provider job %s, not %s; ignored",
            job_record_id,
            job.provider_job_id,
            snapshot.provider_job_id,
        )
        return WebhookOutcome.UNTRACKED
    if not snapshot.state.terminal:
        async with db.session() as session:
            await repository.record_provider_progress(
                session=session, job_record_id=job_record_id, snapshot=snapshot
            )
        return WebhookOutcome.PROGRESS
    handle = temporal.get_workflow_handle(job_workflow_id(job_record_id))
    try:
        await handle.signal(ProviderJobWorkflow.provider_event, snapshot)
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return WebhookOutcome.ALREADY_FINISHED
        raise
    return WebhookOutcome.SIGNALLED
