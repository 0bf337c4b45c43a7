"""The polling schedule, on the time-skipping server, with the real poll activity and database.

A stand-in provider answers "still processing"; every poll it sees what the previous poll wrote
to the database, so the test checks `poll_attempts` and `next_poll_at` at every attempt.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.provider_jobs import ProviderJobActivities
from activities.records import RecordActivities
from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.db.models import Execution, ExecutionJob
from reelflow.embedded import temporal_binary
from reelflow.temporal import provider_task_queue, workflow_runner
from reelflow.types import (
    JobStatus,
    PersistInput,
    PersistResult,
    PollSchedule,
    ProviderJobInput,
    ProviderSnapshot,
    ProviderState,
    WaitingStrategy,
)
from workflows.provider_job import ProviderJobWorkflow

SCHEDULE = PollSchedule(first_poll_s=5, multiplier=1.5, max_interval_s=30, max_attempts=8)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_binary("temporal-test-server")
    )
    yield environment
    await environment.shutdown()


@dataclass
class Poll:
    """What the provider saw at one poll: the virtual time and the job's row at that moment."""

    at: datetime
    poll_attempts: int
    next_poll_at: datetime | None
    updated_at: datetime


class SlowProvider:
    """Never finishes before `succeed_at` polls; records every poll."""

    name = "replicate"

    def __init__(self, env: WorkflowEnvironment, db: Database, succeed_at: int | None) -> None:
        self._env = env
        self._db = db
        self._succeed_at = succeed_at
        self.polls: list[Poll] = []
        self.cancelled: list[str] = []
        self.started_at: datetime | None = None

    async def create(self, **_: Any) -> ProviderSnapshot:
        self.started_at = await self._env.get_current_time()
        return ProviderSnapshot("pred-slow", ProviderState.QUEUED, "starting")

    async def get(self, provider_job_id: str, *, model_path: str) -> ProviderSnapshot:
        job_record_id = activity.info().workflow_id.removeprefix("job-")
        async with self._db.session() as session:
            row = await repository.get_job(session=session, job_record_id=job_record_id)
        assert row is not None
        self.polls.append(
            Poll(
                await self._env.get_current_time(),
                row.poll_attempts,
                row.next_poll_at,
                row.updated_at,
            )
        )
        if self._succeed_at is not None and len(self.polls) >= self._succeed_at:
            return ProviderSnapshot(provider_job_id, ProviderState.FAILED, "failed", error="x")
        return ProviderSnapshot(provider_job_id, ProviderState.PROCESSING, "processing")

    async def cancel(self, provider_job_id: str, *, model_path: str) -> None:
        self.cancelled.append(provider_job_id)


@activity.defn(name="persist_outputs")
async def persist_nothing(job: PersistInput) -> PersistResult:
    raise AssertionError("nothing is persisted in these tests")


async def _new_job(db: Database) -> ExecutionJob:
    now = repository.utcnow()
    execution = Execution(
        id=str(uuid.uuid4()), status="running", plan={}, meta={}, created_at=now, updated_at=now
    )
    job = ExecutionJob(
        id=str(uuid.uuid4()),
        execution_id=execution.id,
        job_id="clip",
        position=0,
        operation="pipeline:generate",
        model_id="bytedance/seedance-1-lite",
        provider="replicate",
        params={"modelId": "bytedance/seedance-1-lite", "prompt": "slow", "durationSeconds": 5},
        depends_on=[],
        status="pending",
        outputs=[],
        created_at=now,
        updated_at=now,
    )
    async with db.session() as session:
        await repository.add_execution(session=session, execution=execution, jobs=[job])
    return job


async def _run(
    env: WorkflowEnvironment,
    db: Database,
    provider: SlowProvider,
    schedule: PollSchedule = SCHEDULE,
) -> Any:
    row = await _new_job(db)
    job = ProviderJobInput(
        job_record_id=row.id,
        execution_id=row.execution_id,
        job_id=row.job_id,
        model_id="bytedance/seedance-1-lite",
        provider="replicate",
        params=row.params,
        waiting_strategy=WaitingStrategy.POLLING,
        webhook_url=None,
        deadline_seconds=3600,
        poll=schedule,
    )
    activities = ProviderJobActivities(db=db, providers={"replicate": provider})
    records = RecordActivities(db=db)
    queue = f"schedule-{uuid.uuid4()}"
    async with (
        Worker(
            env.client,
            task_queue=queue,
            workflows=[ProviderJobWorkflow],
            workflow_runner=workflow_runner(),
            activities=[persist_nothing, records.record_job, records.record_execution],
        ),
        Worker(
            env.client,
            task_queue=provider_task_queue(queue, "replicate"),
            activities=[activities.start_job, activities.poll_job, activities.cancel_job],
        ),
    ):
        outcome = await env.client.execute_workflow(
            ProviderJobWorkflow.run, job, id=f"job-{row.id}", task_queue=queue
        )
    async with db.session() as session:
        final = await repository.get_job(session=session, job_record_id=row.id)
    return outcome, final


def _expected_gaps(polls: int) -> list[float]:
    return [SCHEDULE.gap_after(attempt) for attempt in range(1, polls)]


async def test_polls_follow_the_schedule_and_the_database_tracks_each_attempt(
    env: WorkflowEnvironment, db: Database
) -> None:
    provider = SlowProvider(env, db, succeed_at=6)

    outcome, final = await _run(env, db, provider)

    assert outcome.status is JobStatus.FAILED
    assert [poll.poll_attempts for poll in provider.polls] == [0, 1, 2, 3, 4, 5]
    assert provider.started_at is not None
    first_delay = (provider.polls[0].at - provider.started_at).total_seconds()
    assert first_delay == pytest.approx(5, abs=0.5)
    gaps = [
        (b.at - a.at).total_seconds()
        for a, b in zip(provider.polls, provider.polls[1:], strict=False)
    ]
    assert gaps == pytest.approx([7.5, 11.25, 16.875, 25.3125, 30], abs=0.5)
    assert gaps == pytest.approx(_expected_gaps(6), abs=0.5)
    # When the first poll is due, written as the schedule was armed.
    first = provider.polls[0]
    assert first.next_poll_at is not None
    assert (first.next_poll_at - first.updated_at).total_seconds() == pytest.approx(5, abs=0.05)
    assert (first.at - first.next_poll_at).total_seconds() == pytest.approx(0, abs=0.5)
    # What each poll wrote: its attempt number, and when the next one is due.
    for poll, gap in zip(provider.polls[1:], _expected_gaps(6), strict=True):
        assert poll.next_poll_at is not None
        assert (poll.next_poll_at - poll.updated_at).total_seconds() == pytest.approx(gap, abs=0.05)
    assert final.poll_attempts == 6
    assert final.next_poll_at is None
    # All six polls were retries of one activity: no timer fired and no workflow task ran for
    # any of them, which is what a waiting job costs.
    history = await env.client.get_workflow_handle(f"job-{final.id}").fetch_history()
    kinds = [event.WhichOneof("attributes") for event in history.events]
    assert "timer_fired_event_attributes" not in kinds
    assert kinds.count("activity_task_scheduled_event_attributes") == 2  # start, poll
    assert kinds.count("workflow_task_completed_event_attributes") == 3


async def test_polling_stops_at_the_attempt_limit_and_cancels_the_job(
    env: WorkflowEnvironment, db: Database
) -> None:
    provider = SlowProvider(env, db, succeed_at=None)

    outcome, final = await _run(env, db, provider)

    assert len(provider.polls) == SCHEDULE.max_attempts
    assert outcome.status is JobStatus.FAILED
    assert outcome.error == f"the provider job did not finish after {SCHEDULE.max_attempts} polls"
    assert provider.cancelled == ["pred-slow"]
    assert final.status == "failed"
    assert final.poll_attempts == SCHEDULE.max_attempts
    assert final.next_poll_at is None
    gaps = [
        (b.at - a.at).total_seconds()
        for a, b in zip(provider.polls, provider.polls[1:], strict=False)
    ]
    assert gaps[-2:] == pytest.approx([30, 30], abs=0.5)


async def test_jittered_polls_come_exactly_when_the_database_says(
    temporal_env: WorkflowEnvironment, db: Database
) -> None:
    # On the dev server in real time: the time-skipping server ignores a failure's
    # `next_retry_delay`, which is how each jittered gap reaches Temporal. Gaps of 1 s or more:
    # Temporal retries no sooner.
    schedule = PollSchedule(first_poll_s=2, multiplier=1, max_interval_s=2, max_attempts=8)
    provider = SlowProvider(temporal_env, db, succeed_at=4)

    await _run(temporal_env, db, provider, replace(schedule, jitter=0.5))

    # The row before each poll (the first included) says when it comes, and it comes then.
    recorded = []
    for poll in provider.polls:
        assert poll.next_poll_at is not None
        assert (poll.at - poll.next_poll_at).total_seconds() == pytest.approx(0, abs=0.3)
        recorded.append((poll.next_poll_at - poll.updated_at).total_seconds())
    nominal = [schedule.gap_after(poll) for poll in range(4)]
    for gap, full in zip(recorded, nominal, strict=True):
        assert full / 2 <= gap <= full
    assert recorded != pytest.approx(nominal)


def test_jitter_only_shortens_gaps() -> None:
    rng = random.Random(7)
    jittered = replace(SCHEDULE, jitter=0.2)

    draws = [jittered.jittered_gap_after(2, rng) for _ in range(200)]

    assert all(0.8 * 11.25 <= draw <= 11.25 for draw in draws)
    assert max(draws) - min(draws) > 2
    assert SCHEDULE.jittered_gap_after(2, rng) == SCHEDULE.gap_after(2) == 11.25
    assert SCHEDULE.gap_after(0) == 5
    assert SCHEDULE.gap_after(9) == 30
