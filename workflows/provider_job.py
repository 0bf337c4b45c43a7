"""ProviderJobWorkflow: one generation job at one provider, from start to stored output."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.persist import PersistActivities
    from activities.provider_jobs import JOB_STILL_RUNNING, ProviderJobActivities
    from reelflow.temporal import poll_retry_policy, provider_task_queue
    from reelflow.types import (
        CancelInput,
        JobOutcome,
        JobStatus,
        JobUpdate,
        PersistInput,
        PollInput,
        ProviderJobInput,
        ProviderSnapshot,
        ProviderState,
    )
    from workflows.recording import record_job

__all__ = ["ProviderJobWorkflow", "failure_message"]

_PROVIDER_CALL = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)
_PERSIST = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=6,
)


def _provider_queue(job: ProviderJobInput) -> str:
    # Each provider's calls go through a task queue of their own, rate-limited by Temporal.
    return provider_task_queue(workflow.info().task_queue, job.provider)


def failure_message(error: BaseException) -> str:
    """The innermost message of an activity or child failure: the provider's words, not
    Temporal's wrapping."""
    cause: BaseException | None = error
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    return str(cause) if cause is not None else str(error)


@workflow.defn
class ProviderJobWorkflow:
    """Start a provider job, wait for it by webhook signal and/or polling, store its outputs."""

    def __init__(self) -> None:
        self._provider_job_id: str | None = None
        self._terminal_events: dict[str, ProviderSnapshot] = {}
        self._status = JobStatus.PENDING

    @workflow.signal
    def provider_event(self, snapshot: ProviderSnapshot) -> None:
        """A verified webhook's content, sent by the webhook route."""
        # Only terminal states matter here; progress goes straight to the database. Keep the
        # first terminal event per provider job: duplicates and late retries change nothing.
        if snapshot.state.terminal:
            self._terminal_events.setdefault(snapshot.provider_job_id, snapshot)

    @workflow.query
    def status(self) -> JobStatus:
        """The job's current status."""
        return self._status

    @workflow.run
    async def run(self, job: ProviderJobInput) -> JobOutcome:
        """Run the job to a final status; never raises except when cancelled."""
        try:
            return await self._run(job)
        except asyncio.CancelledError:
            # Cancelling the workflow must stop the provider's billing too.
            if self._provider_job_id is not None:
                await self._cancel_at_provider(job)
            await record_job(JobUpdate(job.job_record_id, JobStatus.CANCELED, error="canceled"))
            raise

    async def _run(self, job: ProviderJobInput) -> JobOutcome:
        deadline = workflow.now() + timedelta(seconds=job.deadline_seconds)
        try:
            started = await workflow.execute_activity_method(
                ProviderJobActivities.start_job,
                job,
                task_queue=_provider_queue(job),
                start_to_close_timeout=timedelta(seconds=60),
                # The activity heartbeats while it waits for the provider: a dead worker's
                # attempt is retried (and finds the job it created) within seconds.
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=_PROVIDER_CALL,
            )
        except ActivityError as error:
            return await self._finish(job, JobStatus.FAILED, error=failure_message(error))
        snapshot = started.snapshot
        self._provider_job_id = snapshot.provider_job_id
        self._status = JobStatus.PROCESSING

        if not snapshot.state.terminal:
            try:
                snapshot = await self._wait(job, snapshot.provider_job_id, deadline)
            except (TimeoutError, ActivityError, ApplicationError) as error:
                # Past the deadline or out of polls: stop the provider's clock before failing.
                await self._cancel_at_provider(job)
                timed_out = isinstance(error, TimeoutError) or (
                    isinstance(error, ActivityError) and error.retry_state is RetryState.TIMEOUT
                )
                message = (
                    f"no result within the deadline of {job.deadline_seconds} s;"
                    " the job was cancelled at the provider"
                    if timed_out
                    else failure_message(error)
                )
                return await self._finish(job, JobStatus.FAILED, error=message)

        if snapshot.state is ProviderState.SUCCEEDED:
            return await self._persist(job, snapshot)
        if snapshot.state is ProviderState.CANCELED:
            return await self._finish(
                job,
                JobStatus.CANCELED,
                provider_status=snapshot.provider_status,
                error=snapshot.error or "canceled at the provider",
            )
        return await self._finish(
            job,
            JobStatus.FAILED,
            provider_status=snapshot.provider_status,
            error=snapshot.error or f"the provider reported {snapshot.provider_status}",
        )

    async def _wait(
        self, job: ProviderJobInput, provider_job_id: str, deadline: datetime
    ) -> ProviderSnapshot:
        """Race the webhook signal against polling; the first terminal state wins."""

        def remaining() -> timedelta:
            left = deadline - workflow.now()
            if left <= timedelta(0):
                raise TimeoutError
            return left

        def signalled() -> bool:
            return provider_job_id in self._terminal_events

        if signalled():
            return self._terminal_events[provider_job_id]
        schedule = job.poll
        # Started now, for the first poll too (see `poll_retry_policy` and `poll_job`).
        poll = workflow.start_activity_method(
            ProviderJobActivities.poll_job,
            PollInput(job.job_record_id, job.provider, job.model_id, provider_job_id, schedule),
            task_queue=_provider_queue(job),
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=remaining(),
            retry_policy=poll_retry_policy(schedule),
        )
        signal = asyncio.ensure_future(workflow.wait_condition(signalled))
        try:
            # The workflow keeps the deadline itself rather than trusting the activity's
            # schedule-to-close alone: a late signal or a slow poll must not stretch it.
            done, _ = await workflow.wait(
                [poll, signal],
                timeout=remaining().total_seconds(),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                raise TimeoutError
        finally:
            for pending in (poll, signal):
                if not pending.done():
                    pending.cancel()
        if signalled():
            return self._terminal_events[provider_job_id]
        try:
            return await poll
        except ActivityError as error:
            if _is_poll_exhausted(error):
                raise ApplicationError(
                    f"the provider job did not finish after {schedule.max_attempts} polls"
                ) from error
            raise

    async def _persist(self, job: ProviderJobInput, snapshot: ProviderSnapshot) -> JobOutcome:
        if not snapshot.output_urls:
            return await self._finish(
                job,
                JobStatus.FAILED,
                provider_status=snapshot.provider_status,
                error="the provider reported success but returned no output",
            )
        try:
            persisted = await workflow.execute_activity_method(
                PersistActivities.persist,
                PersistInput(
                    job.job_record_id,
                    job.execution_id,
                    job.provider,
                    snapshot.output_urls,
                    provider_status=snapshot.provider_status,
                    compute_seconds=snapshot.compute_seconds,
                ),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=_PERSIST,
            )
        except ActivityError as error:
            return await self._finish(
                job,
                JobStatus.FAILED,
                provider_status=snapshot.provider_status,
                error=f"storing the output failed: {failure_message(error)}",
            )
        # The persist activity recorded the completion with the outputs.
        self._status = JobStatus.COMPLETED
        return JobOutcome(job.job_record_id, JobStatus.COMPLETED, outputs=persisted.outputs)

    async def _finish(
        self,
        job: ProviderJobInput,
        status: JobStatus,
        *,
        error: str,
        provider_status: str | None = None,
    ) -> JobOutcome:
        await record_job(JobUpdate(job.job_record_id, status, provider_status, error=error))
        self._status = status
        return JobOutcome(job.job_record_id, status, error=error)

    async def _cancel_at_provider(self, job: ProviderJobInput) -> None:
        assert self._provider_job_id is not None
        try:
            await workflow.execute_activity_method(
                ProviderJobActivities.cancel_job,
                CancelInput(job.job_record_id, job.provider, job.model_id, self._provider_job_id),
                task_queue=_provider_queue(job),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_PROVIDER_CALL,
            )
        except ActivityError as error:
            workflow.logger.warning(
                "Could not cancel provider job %s: %s",
                self._provider_job_id,
                failure_message(error),
            )


def _is_poll_exhausted(error: ActivityError) -> bool:
    cause = error.cause
    return (
        error.retry_state is RetryState.MAXIMUM_ATTEMPTS_REACHED
        and isinstance(cause, ApplicationError)
        and cause.type == JOB_STILL_RUNNING
    )
