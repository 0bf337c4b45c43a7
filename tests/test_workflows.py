"""Workflow behaviour with stand-in activities on Temporal's time-skipping test server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.provider_jobs import still_running
from reelflow.embedded import temporal_binary
from reelflow.temporal import provider_task_queue, workflow_runner
from reelflow.types import (
    CancelInput,
    ExecutionInput,
    ExecutionStatus,
    ExecutionUpdate,
    JobStatus,
    JobUpdate,
    PersistInput,
    PersistResult,
    PlanJob,
    PollInput,
    PollSchedule,
    ProviderJobInput,
    ProviderSnapshot,
    ProviderState,
    StartJobResult,
    StoredOutput,
    WaitingStrategy,
)
from workflows.execution import ExecutionWorkflow
from workflows.provider_job import ProviderJobWorkflow

RUNNING = ProviderSnapshot("pred-1", ProviderState.PROCESSING, "processing")
SUCCEEDED = ProviderSnapshot(
    "pred-1", ProviderState.SUCCEEDED, "succeeded", output_urls=["https://x/out.mp4"]
)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_binary("temporal-test-server")
    )
    yield environment
    await environment.shutdown()


def never_finishes(_: PollInput) -> ProviderSnapshot:
    raise still_running("still running")


class Provider:
    """Stand-in activities recording what the workflows asked for."""

    def __init__(
        self,
        *,
        start_result: ProviderSnapshot | Exception = RUNNING,
        poll: Callable[[PollInput], ProviderSnapshot] = never_finishes,
    ) -> None:
        self.start_result = start_result
        self.poll = poll
        self.polls: list[int] = []
        self.started_at = 0.0
        self.poll_times: list[float] = []
        self.cancelled: list[str] = []
        self.jobs: list[JobUpdate] = []
        self.executions: list[ExecutionUpdate] = []

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="start_provider_job")
        async def start(job: ProviderJobInput) -> StartJobResult:
            self.started_at = time.monotonic()
            if isinstance(self.start_result, Exception):
                raise self.start_result
            return StartJobResult(self.start_result)

        @activity.defn(name="poll_provider_job")
        async def poll(poll: PollInput) -> ProviderSnapshot:
            # As the real activity: attempt 1 arms the schedule, each later one is a poll.
            attempt = activity.info().attempt
            if attempt == 1:
                raise still_running("armed")
            self.polls.append(attempt - 1)
            self.poll_times.append(time.monotonic())
            return self.poll(poll)

        @activity.defn(name="cancel_provider_job")
        async def cancel(cancel: CancelInput) -> None:
            self.cancelled.append(cancel.provider_job_id)

        @activity.defn(name="persist_outputs")
        async def persist(job: PersistInput) -> PersistResult:
            outputs = [
                StoredOutput(f"https://cdn/{url}", "k", "video/mp4", 10, "0" * 64)
                for url in job.output_urls
            ]
            # As the real activity: the job's completion is recorded with its outputs.
            self.jobs.append(
                JobUpdate(
                    job.job_record_id,
                    JobStatus.COMPLETED,
                    provider_status=job.provider_status,
                    outputs=outputs,
                    compute_seconds=job.compute_seconds,
                )
            )
            return PersistResult(outputs)

        @activity.defn(name="record_job_update")
        async def record_job(update: JobUpdate) -> None:
            self.jobs.append(update)

        @activity.defn(name="record_execution_update")
        async def record_execution(update: ExecutionUpdate) -> None:
            self.executions.append(update)

        return [start, poll, cancel, persist, record_job, record_execution]


def job_input(
    job_id: str = "clip",
    *,
    strategy: WaitingStrategy = WaitingStrategy.POLLING,
    deadline_seconds: int = 1800,
    max_attempts: int = 100,
) -> ProviderJobInput:
    return ProviderJobInput(
        job_record_id=str(uuid.uuid4()),
        execution_id="exec-1",
        job_id=job_id,
        model_id="bytedance/seedance-1-lite",
        provider="replicate",
        params={"prompt": "p"},
        waiting_strategy=strategy,
        webhook_url=None,
        deadline_seconds=deadline_seconds,
        poll=PollSchedule(5, 1.5, 60, max_attempts),
    )


@asynccontextmanager
async def worker_for(client: Client, provider: Provider) -> AsyncIterator[str]:
    """Run both workflows with the provider's stand-in activities on a fresh task queue (and
    its provider queue, where the provider calls go)."""
    queue = f"q-{uuid.uuid4()}"
    activities = {fn.__name__: fn for fn in provider.activities()}
    provider_calls = [activities.pop(name) for name in ("start", "poll", "cancel")]
    async with (
        Worker(
            client,
            task_queue=queue,
            workflows=[ProviderJobWorkflow, ExecutionWorkflow],
            workflow_runner=workflow_runner(),
            activities=list(activities.values()),
        ),
        Worker(
            client,
            task_queue=provider_task_queue(queue, "replicate"),
            activities=provider_calls,
        ),
    ):
        yield queue


def plan_job(job: ProviderJobInput, depends_on: list[str] | None = None) -> PlanJob:
    return PlanJob(
        job_record_id=job.job_record_id,
        job_id=job.job_id,
        operation="pipeline:generate",
        params=job.params,
        depends_on=depends_on or [],
        continue_on_error=False,
        generate=job,
    )


async def run_job(client: Client, provider: Provider, job: ProviderJobInput) -> Any:
    async with worker_for(client, provider) as queue:
        return await client.execute_workflow(
            ProviderJobWorkflow.run, job, id=f"job-{job.job_record_id}", task_queue=queue
        )


async def test_polling_follows_the_backoff_schedule_until_success(
    temporal_env: WorkflowEnvironment,
) -> None:
    # Real time on the dev server (the time-skipping server does not pace activity retries),
    # on the 5 s x 1.5 schedule scaled down by ten.
    provider = Provider()
    provider.poll = lambda _: _raise_until(provider, 3)
    job = job_input()
    job.poll = PollSchedule(0.5, 1.5, 60, 100)

    outcome = await run_job(temporal_env.client, provider, job)

    assert outcome.status is JobStatus.COMPLETED
    assert provider.polls == [1, 2, 3]
    first, second, third = provider.poll_times
    # The first gap also holds a workflow task and the activity's dispatch.
    assert 0.5 <= first - provider.started_at < 1.5
    assert second - first == pytest.approx(0.75, abs=0.3)
    assert third - second == pytest.approx(1.125, abs=0.3)
    assert provider.jobs[-1].status is JobStatus.COMPLETED
    assert provider.jobs[-1].outputs is not None and provider.jobs[-1].outputs[0].url


def _raise_until(provider: Provider, succeed_on: int) -> ProviderSnapshot:
    if len(provider.polls) < succeed_on:
        raise still_running("still running")
    return SUCCEEDED


async def test_job_past_its_deadline_is_cancelled_at_the_provider(env: WorkflowEnvironment) -> None:
    provider = Provider()

    outcome = await run_job(env.client, provider, job_input(deadline_seconds=600, max_attempts=0))

    assert outcome.status is JobStatus.FAILED
    assert "deadline of 600 s" in outcome.error
    assert provider.cancelled == ["pred-1"]
    assert provider.jobs[-1].status is JobStatus.FAILED


async def test_job_out_of_polls_fails_and_is_cancelled(env: WorkflowEnvironment) -> None:
    provider = Provider()

    outcome = await run_job(env.client, provider, job_input(max_attempts=3))

    assert outcome.status is JobStatus.FAILED
    assert outcome.error == "the provider job did not finish after 3 polls"
    assert provider.polls == [1, 2, 3]
    assert provider.cancelled == ["pred-1"]


async def test_rejected_start_fails_the_job_with_the_providers_message(
    env: WorkflowEnvironment,
) -> None:
    provider = Provider(
        start_result=ApplicationError("prompt: must not be empty", non_retryable=True)
    )

    outcome = await run_job(env.client, provider, job_input())

    assert outcome.status is JobStatus.FAILED
    assert outcome.error == "prompt: must not be empty"
    assert provider.cancelled == []


async def test_webhook_signal_completes_the_job_before_any_poll(env: WorkflowEnvironment) -> None:
    provider = Provider()
    job = job_input(strategy=WaitingStrategy.WEBHOOK)
    async with worker_for(env.client, provider) as queue:
        handle = await env.client.start_workflow(
            ProviderJobWorkflow.run, job, id=f"job-{job.job_record_id}", task_queue=queue
        )
        other = ProviderSnapshot(
            "someone-else", ProviderState.SUCCEEDED, "succeeded", ["https://x/y"]
        )
        await handle.signal(ProviderJobWorkflow.provider_event, other)
        await handle.signal(ProviderJobWorkflow.provider_event, RUNNING)
        await handle.signal(ProviderJobWorkflow.provider_event, SUCCEEDED)
        await handle.signal(ProviderJobWorkflow.provider_event, SUCCEEDED)
        outcome = await handle.result()

    assert outcome.status is JobStatus.COMPLETED
    assert outcome.outputs[0].url == "https://cdn/https://x/out.mp4"
    assert provider.polls == []


async def test_failed_job_skips_its_dependents_and_fails_the_execution(
    env: WorkflowEnvironment,
) -> None:
    provider = Provider(
        poll=lambda _: ProviderSnapshot("pred-1", ProviderState.FAILED, "failed", error="boom")
    )
    first = plan_job(job_input("first"))
    second = plan_job(job_input("second"), depends_on=["first"])
    async with worker_for(env.client, provider) as queue:
        result = await env.client.execute_workflow(
            ExecutionWorkflow.run,
            ExecutionInput("exec-1", [first, second], max_parallel_jobs=10),
            id=f"execution-{uuid.uuid4()}",
            task_queue=queue,
        )

    assert result.status is ExecutionStatus.FAILED
    assert [job.status for job in result.jobs] == [JobStatus.FAILED, JobStatus.SKIPPED]
    assert result.jobs[1].error == "skipped because first did not complete"
    assert (
        provider.executions[-1].error
        == "first: failed (boom); second: skipped (skipped because first did not complete)"
    )


async def test_cancelling_an_execution_cancels_its_provider_jobs(env: WorkflowEnvironment) -> None:
    provider = Provider()
    job = job_input()
    async with worker_for(env.client, provider) as queue:
        handle = await env.client.start_workflow(
            ExecutionWorkflow.run,
            ExecutionInput("exec-1", [plan_job(job)], max_parallel_jobs=10),
            id=f"execution-{uuid.uuid4()}",
            task_queue=queue,
        )
        while not provider.polls:
            await asyncio.sleep(0.05)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()

    assert provider.cancelled == ["pred-1"]
    assert [u.status for u in provider.jobs if u.job_record_id == job.job_record_id][
        -1
    ] is JobStatus.CANCELED
    assert provider.executions[-1].status is ExecutionStatus.CANCELED
    child = env.client.get_workflow_handle(f"job-{job.job_record_id}")
    assert (await child.describe()).status.name == "CANCELED"
