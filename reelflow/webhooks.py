"""Receiving provider webhooks: verify, look the job up, signal its workflow. No downloads."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import ParamSpec

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from reelflow.auth import webhook_token_valid
from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.db.models import ExecutionJob
from reelflow.metrics import WEBHOOK_DELIVERIES, WEBHOOK_RESULTS
from reelflow.providers.base import Provider
from reelflow.providers.errors import WebhookVerificationError
from reelflow.temporal import job_workflow_id
from reelflow.types import CancelInput, ProviderSnapshot, WaitingStrategy
from workflows.orphan import CancelOrphanWorkflow
from workflows.provider_job import ProviderJobWorkflow

__all__ = ["InvalidWebhookToken", "UnknownJob", "WebhookOutcome", "receive_webhook"]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")


class UnknownJob(Exception):
    """No job has this record id (or its provider is not configured here)."""


class InvalidWebhookToken(Exception):
    """The webhook URL's token is missing or not this job's."""


class WebhookOutcome(StrEnum):
    """What became of an accepted webhook."""

    SIGNALLED = "signalled"
    """A terminal state, passed to the job's workflow."""
    PROGRESS = "progress"
    """A progress update, written to the job's row."""
    ALREADY_FINISHED = "already_finished"
    """The job's workflow has already closed; nothing to do."""
    UNTRACKED = "untracked"
    """Genuine, but about a provider job other than the one this job record tracks (an orphan,
    cancelled at the provider if it still runs)."""
    DUPLICATE = "duplicate"
    """A redelivery of a webhook already handled."""


_RESULTS = {WebhookOutcome.DUPLICATE: "duplicate", WebhookOutcome.UNTRACKED: "untracked"}
"""The `reelflow_webhook_deliveries_total` result of each outcome; the others are `accepted`."""

_FAILURES: dict[type[Exception], str] = {
    InvalidWebhookToken: "bad_token",
    UnknownJob: "unknown",
    WebhookVerificationError: "bad_signature",
}
"""The result of each refusal; any other failure (verification unavailable, a failure of ours:
the provider retries) is `error`."""

for _result in WEBHOOK_RESULTS:
    # The API process exports every result from the start, at 0: rates and alerts need no
    # special case for a result not seen yet.
    WEBHOOK_DELIVERIES.labels(_result)


def _counted(
    receive: Callable[_P, Awaitable[WebhookOutcome]],
) -> Callable[_P, Awaitable[WebhookOutcome]]:
    """Count every delivery `receive` handles or refuses in `reelflow_webhook_deliveries_total`."""

    @functools.wraps(receive)
    async def counted(*args: _P.args, **kwargs: _P.kwargs) -> WebhookOutcome:
        try:
            outcome = await receive(*args, **kwargs)
        except Exception as error:
            kind = next((kind for kind in _FAILURES if isinstance(error, kind)), None)
            WEBHOOK_DELIVERIES.labels(_FAILURES[kind] if kind else "error").inc()
            raise
        WEBHOOK_DELIVERIES.labels(_RESULTS.get(outcome, "accepted")).inc()
        return outcome

    return counted


@_counted
async def receive_webhook(
    *,
    db: Database,
    temporal: Client,
    providers: Mapping[str, Provider],
    webhook_secret: bytes,
    task_queue: str,
    job_record_id: str,
    token: str | None,
    headers: Mapping[str, str],
    body: bytes,
) -> WebhookOutcome:
    """Handle one provider callback for a job.

    Raises:
        InvalidWebhookToken: the URL's token is missing or wrong (checked before anything else).
        UnknownJob: there is no such job.
        WebhookVerificationError: the signature or timestamp is not acceptable.
        ProviderError: what verification needs could not be fetched.
    """
    if not webhook_token_valid(webhook_secret, job_record_id, token):
        raise InvalidWebhookToken(job_record_id)
    async with db.session() as session:
        job = await repository.get_job(session=session, job_record_id=job_record_id)
    provider = providers.get(job.provider or "") if job is not None else None
    if job is None or provider is None:
        raise UnknownJob(job_record_id)
    # Nothing in the body is trusted, not even to log, before this line.
    snapshot = await provider.verify_webhook(headers, body)
    delivery_id = _delivery_id(headers, body)
    logger.info(
        "[Webhook] Received webhook for job %s, model %s (%s)",
        job_record_id,
        job.model_id,
        snapshot.provider_status,
    )
    async with db.session() as session:
        # Claimed before acting and remembered only if the transaction commits: a concurrent
        # redelivery waits on the claim and is then a duplicate; a delivery that failed
        # half-way is rolled back, redelivered and retried.
        if not await repository.claim_delivery(
            session=session,
            provider=provider.name,
            delivery_id=delivery_id,
            job_record_id=job_record_id,
        ):
            return WebhookOutcome.DUPLICATE
        outcome = await _act(temporal, task_queue, session, job, snapshot)
        await repository.set_delivery_outcome(
            session=session, provider=provider.name, delivery_id=delivery_id, outcome=outcome.value
        )
    return outcome


def _delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    # Standard Webhooks signs its `webhook-id`; other providers sign the body, whose digest
    # then names the delivery.
    return headers.get("webhook-id") or hashlib.sha256(body).hexdigest()


async def _act(
    temporal: Client,
    task_queue: str,
    session: AsyncSession,
    job: ExecutionJob,
    snapshot: ProviderSnapshot,
) -> WebhookOutcome:
    if job.provider_job_id is None:
        # The provider told us of the job before the start activity recorded it (Replicate's
        # `start` webhook can beat the create response, and the worker may have died in
        # between): record it now, first one wins, so a retried start adopts it rather than
        # creating a second, billed job.
        job.provider_job_id = await repository.record_provider_job(
            session=session,
            job_record_id=job.id,
            snapshot=snapshot,
            waiting_strategy=WaitingStrategy(job.waiting_strategy or "polling"),
        )
    if snapshot.provider_job_id != job.provider_job_id:
        # Signed by the provider but about another provider job: a duplicate created by a
        # retried start, or a delivery replayed at another job's URL.
        logger.warning(
            "[Webhook] Job %s tracks provider job %s, not %s: untracked",
            job.id,
            job.provider_job_id,
            snapshot.provider_job_id,
        )
        if not snapshot.state.terminal:
            await _cancel_orphan(temporal, task_queue, job, snapshot.provider_job_id)
        return WebhookOutcome.UNTRACKED
    if not snapshot.state.terminal:
        await repository.record_provider_progress(
            session=session, job_record_id=job.id, snapshot=snapshot
        )
        return WebhookOutcome.PROGRESS
    handle = temporal.get_workflow_handle(job_workflow_id(job.id))
    try:
        await handle.signal(ProviderJobWorkflow.provider_event, snapshot)
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            return WebhookOutcome.ALREADY_FINISHED
        raise
    return WebhookOutcome.SIGNALLED


async def _cancel_orphan(
    temporal: Client, task_queue: str, job: ExecutionJob, provider_job_id: str
) -> None:
    assert job.provider is not None and job.model_id is not None
    try:
        await temporal.start_workflow(
            CancelOrphanWorkflow.run,
            CancelInput(job.id, job.provider, job.model_id, provider_job_id),
            id=f"orphan-{job.provider}-{provider_job_id}",
            task_queue=task_queue,
        )
    except WorkflowAlreadyStartedError:
        pass
