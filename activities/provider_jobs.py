"""Activities that talk to providers: start a job, poll it, cancel it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Mapping
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.metrics import JOBS_STARTED, POLLS
from reelflow.providers.base import Provider
from reelflow.providers.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
)
from reelflow.providers.registry import ModelSpec, get_model
from reelflow.types import (
    CancelInput,
    PollInput,
    ProviderJobInput,
    ProviderSnapshot,
    StartJobResult,
    WaitingStrategy,
)

__all__ = ["JOB_STILL_RUNNING", "ProviderJobActivities", "as_application_error", "still_running"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The error type a poll raises while the provider is still working; the workflow's retry
# policy turns it into the next poll, without adding history events.
JOB_STILL_RUNNING = "JobStillRunning"


def as_application_error(error: ProviderError) -> ApplicationError:
    """Translate a provider error into Temporal's terms: retryable or not, and when to retry."""
    if isinstance(error, ProviderRateLimited):
        delay = timedelta(seconds=error.retry_after_s) if error.retry_after_s else None
        return ApplicationError(str(error), type="ProviderRateLimited", next_retry_delay=delay)
    return ApplicationError(
        str(error),
        type=type(error).__name__,
        non_retryable=isinstance(error, ProviderRejected),
    )


def still_running(message: str, next_poll_in: timedelta | None = None) -> ApplicationError:
    """The error a poll raises while the job runs: Temporal polls again after `next_poll_in`,
    or when the workflow's retry policy (the schedule without jitter) says."""
    return ApplicationError(
        message,
        type=JOB_STILL_RUNNING,
        next_retry_delay=next_poll_in,
        # Expected on every poll but the last: no warning and traceback each time.
        category=ApplicationErrorCategory.BENIGN,
    )


_CLOCK_SKEW = timedelta(minutes=5)
# Heartbeat details of the start activity, which the next attempt reads: whether the provider
# may hold a job this attempt created (a crash or an ambiguous error mid-create) or certainly
# does not (it refused or throttled the create).
_MAY_HAVE_CREATED = "may-have-created"
_NOT_CREATED = "not-created"
_HEARTBEAT_EVERY_S = 2.0


async def _heartbeating(call: Awaitable[T], detail: str) -> T:
    """Await `call`, heartbeating `detail` meanwhile, so a worker that dies mid-call is noticed
    within the activity's heartbeat timeout rather than its whole start-to-close timeout."""
    activity.heartbeat(detail)
    task = asyncio.ensure_future(call)
    while True:
        done, _ = await asyncio.wait({task}, timeout=_HEARTBEAT_EVERY_S)
        if done:
            return task.result()
        activity.heartbeat(detail)


async def _find_quietly(
    provider: Provider, model: ModelSpec, job: ProviderJobInput, created_after: datetime
) -> ProviderSnapshot | None:
    """The job an earlier attempt created, if the provider can tell; a failed lookup is no
    reason to fail the job: a duplicate it lets through reports in by webhook as an orphan and
    is cancelled."""
    try:
        return await provider.find_existing(
            model_path=model.provider_model_path,
            webhook_url=job.webhook_url,
            created_after=created_after,
        )
    except ProviderError as error:
        logger.warning("Job %s: could not look for earlier jobs: %s", job.job_record_id, error)
        return None


def _model(model_id: str) -> ModelSpec:
    model = get_model(model_id)
    if model is None:
        raise ApplicationError(f"unknown model {model_id!r}", non_retryable=True)
    return model


class ProviderJobActivities:
    """Provider calls made on behalf of ProviderJobWorkflow."""

    def __init__(self, *, db: Database, providers: Mapping[str, Provider]) -> None:
        self._db = db
        self._providers = providers
        self._rng = random.Random()

    def _provider(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None:
            raise ApplicationError(
                f"provider {name!r} is not configured on this worker", non_retryable=True
            )
        return provider

    @activity.defn(name="start_provider_job")
    async def start_job(self, job: ProviderJobInput) -> StartJobResult:
        """Create the job at the provider, or find the one an earlier attempt created.

        The provider job id is written to the database before this returns, so a retry after a
        crash reuses it instead of creating (and paying for) a second job.
        """
        provider = self._provider(job.provider)
        model = _model(job.model_id)
        async with self._db.session() as session:
            row = await repository.get_job(session=session, job_record_id=job.job_record_id)
        if row is None:
            raise ApplicationError(f"job {job.job_record_id} does not exist", non_retryable=True)
        try:
            if row.provider_job_id is not None:
                logger.info(
                    "Job %s already started as %s; reusing it",
                    job.job_record_id,
                    row.provider_job_id,
                )
                return StartJobResult(
                    await provider.get(row.provider_job_id, model_path=model.provider_model_path)
                )
            try:
                params = model.params_model.model_validate(job.params)
            except ValidationError as error:
                # The API validated these params; failing here means the registry changed
                # under a running job, which no retry will mend.
                raise ApplicationError(
                    f"params no longer valid for {model.id}: {error}", non_retryable=True
                ) from error
            snapshot = await self._find_or_create(provider, model, params, job)
        except ProviderError as error:
            raise as_application_error(error) from error
        async with self._db.session() as session:
            recorded = await repository.record_provider_job(
                session=session,
                job_record_id=job.job_record_id,
                snapshot=snapshot,
                waiting_strategy=job.waiting_strategy,
            )
        if recorded != snapshot.provider_job_id:
            # A concurrent attempt won the race; ours is a duplicate that must stop billing.
            logger.warning(
                "Job %s: cancelling duplicate provider job %s (recorded: %s)",
                job.job_record_id,
                snapshot.provider_job_id,
                recorded,
            )
            await self._cancel_quietly(
                provider, snapshot.provider_job_id, model.provider_model_path
            )
            snapshot = await provider.get(recorded, model_path=model.provider_model_path)
        else:
            JOBS_STARTED.labels(job.provider, job.model_id).inc()
        logger.info(
            "Started job %s on %s as %s (%s)",
            job.job_record_id,
            job.provider,
            snapshot.provider_job_id,
            WaitingStrategy(job.waiting_strategy).value,
        )
        return StartJobResult(snapshot)

    @staticmethod
    async def _find_or_create(
        provider: Provider, model: ModelSpec, params: BaseModel, job: ProviderJobInput
    ) -> ProviderSnapshot:
        info = activity.info()
        previous = info.heartbeat_details[0] if info.heartbeat_details else None
        if info.attempt > 1 and previous != _NOT_CREATED:
            # An earlier attempt may have died after the provider accepted the job but before
            # its id was recorded: adopt that job rather than pay for a second one.
            existing = await _heartbeating(
                _find_quietly(provider, model, job, info.scheduled_time - _CLOCK_SKEW),
                _MAY_HAVE_CREATED,
            )
            if existing is not None:
                logger.warning(
                    "Job %s: adopting provider job %s created by an earlier attempt",
                    job.job_record_id,
                    existing.provider_job_id,
                )
                return existing
        try:
            return await _heartbeating(
                provider.create(
                    model_path=model.provider_model_path,
                    inputs=model.to_provider_input(params),
                    webhook_url=job.webhook_url,
                ),
                _MAY_HAVE_CREATED,
            )
        except (ProviderRateLimited, ProviderRejected):
            # The provider answered "no": the next attempt need not look for a job.
            activity.heartbeat(_NOT_CREATED)
            raise

    @activity.defn(name="poll_provider_job")
    async def poll_job(self, poll: PollInput) -> ProviderSnapshot:
        """Ask the provider once; raise a retryable error while the job is not finished.

        Temporal retries this activity on the poll schedule, so one attempt is one poll, after
        the first: the workflow starts this activity with the job, and attempt 1 only arms the
        schedule. Every poll, the first included, is then a retry timed by Temporal, with no
        timer and no workflow task per poll (the cost of a job waiting).
        """
        attempt = activity.info().attempt
        schedule = poll.schedule
        if attempt == 1:
            first_in = timedelta(seconds=schedule.jittered_gap_after(0, self._rng))
            await repository.record_poll_due(
                db=self._db, job_record_id=poll.job_record_id, poll_in=first_in
            )
            raise still_running(f"provider job {poll.provider_job_id} is started", first_in)
        number = attempt - 1
        logger.info("[PollingWorker] Polling job %s (poll %d)", poll.job_record_id, number)
        POLLS.labels(poll.provider).inc()
        try:
            snapshot = await self._provider(poll.provider).get(
                poll.provider_job_id, model_path=_model(poll.model_id).provider_model_path
            )
        except ProviderError as error:
            raise as_application_error(error) from error
        last = schedule.max_attempts and number >= schedule.max_attempts
        next_poll_in = None
        if not snapshot.state.terminal and not last:
            next_poll_in = timedelta(seconds=schedule.jittered_gap_after(number, self._rng))
        await repository.record_poll(
            db=self._db,
            job_record_id=poll.job_record_id,
            attempt=number,
            next_poll_in=next_poll_in,
            snapshot=snapshot,
        )
        if not snapshot.state.terminal:
            raise still_running(
                f"provider job {poll.provider_job_id} is {snapshot.provider_status}", next_poll_in
            )
        return snapshot

    @activity.defn(name="cancel_provider_job")
    async def cancel_job(self, cancel: CancelInput) -> None:
        """Cancel a job at the provider so that it stops billing."""
        try:
            await self._provider(cancel.provider).cancel(
                cancel.provider_job_id, model_path=_model(cancel.model_id).provider_model_path
            )
        except ProviderError as error:
            raise as_application_error(error) from error
        logger.info(
            "Cancelled provider job %s of job %s", cancel.provider_job_id, cancel.job_record_id
        )

    async def _cancel_quietly(
        self, provider: Provider, provider_job_id: str, model_path: str
    ) -> None:
        try:
            await provider.cancel(provider_job_id, model_path=model_path)
        except ProviderError:
            logger.exception("Could not cancel duplicate provider job %s", provider_job_id)
