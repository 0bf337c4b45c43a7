"""Retention: old finished executions, their jobs and outputs go; everything else stays.

The purge runs against the session's real database and a local object store; the workflow and
the schedule run on the real Temporal dev server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, text
from sqlmodel import col
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    WorkflowFailureError,
)
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.retention import PurgeInput, RetentionActivities
from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.db.models import Execution, ExecutionJob
from reelflow.retention import (
    InvalidDuration,
    PurgeReport,
    parse_duration,
    purge_finished_executions,
)
from reelflow.storage import LocalStore, StorageUnavailable
from reelflow.temporal import workflow_runner
from reelflow.types import StoredOutput
from workflows.retention import (
    RETENTION_SCHEDULE_ID,
    RetentionWorkflow,
    ensure_retention_schedule,
)

OLD = timedelta(days=45)
RECENT = timedelta(days=3)
RETENTION = timedelta(days=30)


class Rows:
    """Builds executions (with stored outputs) and removes whatever is left of them afterwards."""

    def __init__(self, db: Database, store: LocalStore, scratch: Path) -> None:
        self._db = db
        self._store = store
        self._scratch = scratch
        self.ids: list[str] = []

    async def execution(
        self,
        status: str,
        *,
        age: timedelta | None,
        jobs: int = 1,
        store_outputs: bool = True,
    ) -> tuple[str, list[str]]:
        """An execution that finished `age` ago (None: not finished), each job with one output.

        Returns the execution id and its outputs' object keys.
        """
        now = repository.utcnow()
        completed_at = now - age if age is not None else None
        created_at = (completed_at or now) - timedelta(minutes=5)
        execution = Execution(
            id=str(uuid.uuid4()),
            status=status,
            plan={},
            meta={},
            created_at=created_at,
            updated_at=completed_at or now,
            completed_at=completed_at,
        )
        rows, keys = [], []
        for position in range(jobs):
            job_record_id = str(uuid.uuid4())
            key = f"executions/{execution.id}/{job_record_id}/output-0.mp4"
            output = StoredOutput(
                url=self._store.public_url(key),
                key=key,
                content_type="video/mp4",
                bytes=4,
                sha256="0" * 64,
            )
            if store_outputs:
                source = self._scratch / f"{job_record_id}.mp4"
                source.write_bytes(b"clip")
                await self._store.put_file(key=key, path=source, content_type="video/mp4")
            keys.append(key)
            rows.append(
                ExecutionJob(
                    id=job_record_id,
                    execution_id=execution.id,
                    job_id=f"clip{position}",
                    position=position,
                    operation="pipeline:generate",
                    params={},
                    depends_on=[],
                    status="completed" if age is not None else "processing",
                    outputs=[asdict(output)] if age is not None else [],
                    created_at=created_at,
                    updated_at=completed_at or now,
                    completed_at=completed_at,
                )
            )
        async with self._db.session() as session:
            await repository.add_execution(session=session, execution=execution, jobs=rows)
        self.ids.append(execution.id)
        return execution.id, keys

    async def existing(self, *execution_ids: str) -> set[str]:
        """Those of these executions still in the database."""
        async with self._db.session() as session:
            return {
                execution_id
                for execution_id in execution_ids
                if await repository.get_execution(
                    session=session, execution_id=execution_id, tenant=None
                )
            }

    async def job_count(self, execution_id: str) -> int:
        async with self._db.session() as session:
            counts = await repository.count_jobs(session=session, execution_ids=[execution_id])
        return counts.get(execution_id, 0)

    async def remove(self) -> None:
        async with self._db.session() as session:
            await session.execute(delete(Execution).where(col(Execution.id).in_(self.ids)))


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "files", "http://files.test/files")


@pytest.fixture
async def rows(db: Database, store: LocalStore, tmp_path: Path) -> AsyncIterator[Rows]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    builder = Rows(db, store, scratch)
    yield builder
    # Rows this test kept, so that the next test's counts are its own.
    await builder.remove()


async def _purge(
    db: Database,
    store: LocalStore,
    *,
    delete_objects: bool = True,
    dry_run: bool = False,
    batch_size: int = 500,
) -> PurgeReport:
    return await purge_finished_executions(
        db=db,
        store=store,
        older_than=RETENTION,
        delete_objects=delete_objects,
        dry_run=dry_run,
        batch_size=batch_size,
    )


@pytest.mark.parametrize(
    ("text_", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("1m", timedelta(minutes=1)),
        ("3650d", timedelta(days=3650)),
    ],
)
def test_durations_in_days_hours_and_minutes_are_parsed(text_: str, expected: timedelta) -> None:
    assert parse_duration(text_) == expected


@pytest.mark.parametrize(
    "text_",
    [
        "",
        "30",
        "d",
        "0d",
        "030d",
        "-1d",
        "+1d",
        "1.5h",
        "30 d",
        " 30d",
        "30d ",
        "30D",
        "30s",
        "1w",
        "1d12h",
        "\u0663d",  # ARABIC-INDIC DIGIT THREE
        "9999999999999d",
    ],
)
def test_anything_else_is_not_a_duration(text_: str) -> None:
    with pytest.raises(InvalidDuration, match="invalid duration"):
        parse_duration(text_)


async def test_old_finished_executions_go_with_their_jobs_and_outputs(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    completed, completed_keys = await rows.execution("completed", age=OLD, jobs=2)
    failed, failed_keys = await rows.execution("failed", age=OLD)
    canceled, canceled_keys = await rows.execution("canceled", age=OLD)

    report = await _purge(db, store)

    assert await rows.existing(completed, failed, canceled) == set()
    assert await rows.job_count(completed) == 0
    for key in completed_keys + failed_keys + canceled_keys:
        assert not await store.exists(key)
    assert (report.executions, report.jobs, report.objects) == (3, 4, 4)
    assert report.batches == 1
    assert not report.dry_run
    expected_cutoff = datetime.now(UTC) - RETENTION
    assert abs((report.cutoff - expected_cutoff).total_seconds()) < 60


async def test_recent_queued_and_running_executions_are_kept(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    recent, recent_keys = await rows.execution("completed", age=RECENT)
    queued, _ = await rows.execution("queued", age=None)
    running, _ = await rows.execution("running", age=None)
    # A running execution never has completed_at; if one did, its status still protects it.
    odd, odd_keys = await rows.execution("running", age=OLD)
    old, _ = await rows.execution("completed", age=OLD)

    report = await _purge(db, store)

    assert await rows.existing(recent, queued, running, odd, old) == {
        recent,
        queued,
        running,
        odd,
    }
    assert await rows.job_count(recent) == 1
    assert await rows.job_count(odd) == 1
    for key in recent_keys + odd_keys:
        assert await store.exists(key)
    assert report.executions == 1


async def test_outputs_are_kept_unless_objects_are_deleted_too(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    old, keys = await rows.execution("completed", age=OLD, jobs=2)

    report = await _purge(db, store, delete_objects=False)

    assert await rows.existing(old) == set()
    assert all([await store.exists(key) for key in keys])
    assert (report.executions, report.jobs, report.objects) == (1, 2, 0)


async def test_a_dry_run_deletes_nothing_and_counts_what_it_would(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    old, keys = await rows.execution("completed", age=OLD, jobs=3)
    other, other_keys = await rows.execution("failed", age=OLD)
    recent, _ = await rows.execution("completed", age=RECENT)

    report = await _purge(db, store, dry_run=True)

    assert await rows.existing(old, other, recent) == {old, other, recent}
    assert await rows.job_count(old) == 3
    assert all([await store.exists(key) for key in keys + other_keys])
    assert report.dry_run
    assert (report.executions, report.jobs, report.objects) == (2, 4, 4)


async def test_a_backlog_larger_than_a_batch_is_deleted_batch_by_batch(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    old = [(await rows.execution("completed", age=OLD + timedelta(hours=i)))[0] for i in range(7)]
    recent, _ = await rows.execution("completed", age=RECENT)
    progress: list[tuple[int, int]] = []

    dry = await purge_finished_executions(
        db=db,
        store=store,
        older_than=RETENTION,
        delete_objects=True,
        dry_run=True,
        batch_size=3,
    )
    report = await purge_finished_executions(
        db=db,
        store=store,
        older_than=RETENTION,
        delete_objects=True,
        dry_run=False,
        batch_size=3,
        on_batch=lambda totals: progress.append((totals.batches, totals.executions)),
    )

    assert (dry.executions, dry.batches) == (7, 3)
    assert (report.executions, report.jobs, report.objects, report.batches) == (7, 7, 7, 3)
    # The running totals after each batch, whatever other tables follow.
    assert sorted(set(progress)) == [(1, 3), (2, 6), (3, 7)]
    assert await rows.existing(*old, recent) == {recent}


async def test_a_backlog_of_exactly_one_batch_ends_with_an_empty_batch(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    old = [(await rows.execution("completed", age=OLD))[0] for _ in range(3)]

    report = await _purge(db, store, batch_size=3)

    assert (report.executions, report.batches) == (3, 1)
    assert await rows.existing(*old) == set()


async def test_outputs_already_missing_from_the_store_are_fine(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    old, keys = await rows.execution("completed", age=OLD, jobs=2, store_outputs=False)

    report = await _purge(db, store)

    assert await rows.existing(old) == set()
    assert report.objects == 2


class FlakyStore(LocalStore):
    """A local store whose deletes fail as an unreachable S3 would."""

    async def delete(self, key: str) -> None:
        raise StorageUnavailable(f"S3 delete of {key} failed: SlowDown (HTTP 503)")


async def test_a_storage_failure_keeps_the_executions_for_the_next_run(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    old, keys = await rows.execution("completed", age=OLD)
    flaky = FlakyStore(store.root, "http://files.test/files")

    with pytest.raises(StorageUnavailable):
        await _purge(db, flaky)

    # The keys are still on record, so the next run deletes the objects and then the rows.
    assert await rows.existing(old) == {old}
    report = await _purge(db, store)
    assert await rows.existing(old) == set()
    assert not await store.exists(keys[0])
    assert report.objects == 1


async def test_invalid_ages_and_batch_sizes_are_refused(db: Database, store: LocalStore) -> None:
    with pytest.raises(ValueError, match="older_than"):
        await purge_finished_executions(
            db=db, store=store, older_than=timedelta(0), delete_objects=False, dry_run=True
        )
    with pytest.raises(ValueError, match="batch_size"):
        await purge_finished_executions(
            db=db,
            store=store,
            older_than=RETENTION,
            delete_objects=False,
            dry_run=True,
            batch_size=0,
        )


async def test_an_age_beyond_the_calendar_deletes_nothing(
    db: Database, store: LocalStore, rows: Rows
) -> None:
    old, _ = await rows.execution("completed", age=OLD)

    report = await purge_finished_executions(
        db=db, store=store, older_than=timedelta.max, delete_objects=True, dry_run=False
    )

    assert report.executions == 0
    assert await rows.existing(old) == {old}


async def _webhook_deliveries_table_exists(db: Database) -> bool:
    async with db.session() as session:
        return await repository.webhook_deliveries_exist(session=session)


async def test_webhook_deliveries_before_the_cutoff_go_when_the_table_exists(
    db: Database, store: LocalStore
) -> None:
    if not await _webhook_deliveries_table_exists(db):
        report = await _purge(db, store)
        assert report.webhook_deliveries is None
        return
    prefix = f"retention-{uuid.uuid4().hex[:8]}"
    now = repository.utcnow()
    async with db.session() as session:
        for name, age in (("old-1", OLD), ("old-2", OLD * 2), ("new", RECENT)):
            await session.execute(
                text(
                    "INSERT INTO webhook_deliveries"
                    " (provider, delivery_id, job_record_id, outcome, received_at)"
                    " VALUES ('replicate', :id, 'job', 'signalled', :at)"
                ),
                {"id": f"{prefix}-{name}", "at": now - age},
            )

    dry = await _purge(db, store, dry_run=True)
    report = await _purge(db, store, batch_size=1)

    async with db.session() as session:
        left = await session.execute(
            text("SELECT delivery_id FROM webhook_deliveries WHERE delivery_id LIKE :prefix"),
            {"prefix": f"{prefix}-%"},
        )
        remaining = set(left.scalars().all())
        await session.execute(
            text("DELETE FROM webhook_deliveries WHERE delivery_id LIKE :prefix"),
            {"prefix": f"{prefix}-%"},
        )
    assert remaining == {f"{prefix}-new"}
    assert dry.webhook_deliveries == 2
    assert report.webhook_deliveries == 2


async def test_the_retention_workflow_runs_the_activity_on_a_real_server(
    temporal_env: WorkflowEnvironment, db: Database, store: LocalStore, rows: Rows
) -> None:
    old, keys = await rows.execution("completed", age=OLD, jobs=2)
    recent, _ = await rows.execution("completed", age=RECENT)
    queue = f"retention-{uuid.uuid4()}"
    activities = RetentionActivities(db=db, store=store)

    async with Worker(
        temporal_env.client,
        task_queue=queue,
        workflows=[RetentionWorkflow],
        workflow_runner=workflow_runner(),
        activities=[activities.purge_finished_executions],
    ):
        report = await temporal_env.client.execute_workflow(
            RetentionWorkflow.run,
            PurgeInput(older_than_s=RETENTION.total_seconds(), delete_objects=True),
            id=f"retention-{uuid.uuid4()}",
            task_queue=queue,
        )

    assert isinstance(report, PurgeReport)
    assert (report.executions, report.jobs, report.objects) == (1, 2, 2)
    assert await rows.existing(old, recent) == {recent}
    assert not any([await store.exists(key) for key in keys])


async def test_the_retention_workflow_fails_at_once_on_invalid_input(
    temporal_env: WorkflowEnvironment, db: Database, store: LocalStore
) -> None:
    queue = f"retention-{uuid.uuid4()}"
    activities = RetentionActivities(db=db, store=store)

    async with Worker(
        temporal_env.client,
        task_queue=queue,
        workflows=[RetentionWorkflow],
        workflow_runner=workflow_runner(),
        activities=[activities.purge_finished_executions],
    ):
        with pytest.raises(WorkflowFailureError) as failure:
            await temporal_env.client.execute_workflow(
                RetentionWorkflow.run,
                PurgeInput(older_than_s=0, delete_objects=False),
                id=f"retention-{uuid.uuid4()}",
                task_queue=queue,
            )

    cause = failure.value.cause
    assert isinstance(cause, ActivityError)
    assert isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "InvalidRetention"
    assert cause.cause.non_retryable


async def _delete_schedule(client: Client) -> None:
    try:
        await client.get_schedule_handle(RETENTION_SCHEDULE_ID).delete()
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise


@pytest.fixture
async def schedule(temporal_env: WorkflowEnvironment) -> AsyncIterator[ScheduleHandle]:
    client = temporal_env.client
    await _delete_schedule(client)
    yield client.get_schedule_handle(RETENTION_SCHEDULE_ID)
    await _delete_schedule(client)


async def _scheduled_input(client: Client, handle: ScheduleHandle) -> PurgeInput:
    action = (await handle.describe()).schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    [purge] = await client.data_converter.decode(list(action.args), [PurgeInput])
    assert isinstance(purge, PurgeInput)
    return purge


async def test_the_schedule_is_created_daily_and_ensuring_it_again_changes_nothing(
    temporal_env: WorkflowEnvironment, schedule: ScheduleHandle
) -> None:
    client = temporal_env.client

    await ensure_retention_schedule(
        client, task_queue="reelflow-a", older_than=RETENTION, delete_objects=False
    )
    created = await schedule.describe()
    await ensure_retention_schedule(
        client, task_queue="reelflow-a", older_than=RETENTION, delete_objects=False
    )
    again = await schedule.describe()

    spec = created.schedule.spec
    assert list(spec.intervals) == [
        ScheduleIntervalSpec(every=timedelta(days=1), offset=timedelta(hours=3))
    ]
    assert not spec.calendars and not spec.cron_expressions
    assert created.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    action = created.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.id, action.task_queue) == (
        "RetentionWorkflow",
        RETENTION_SCHEDULE_ID,
        "reelflow-a",
    )
    assert await _scheduled_input(client, schedule) == PurgeInput(
        older_than_s=RETENTION.total_seconds(), delete_objects=False
    )
    # Nothing was written the second time.
    assert again.info.last_updated_at == created.info.last_updated_at
    assert again.schedule.spec == created.schedule.spec
    assert not created.schedule.state.paused
    assert created.info.next_action_times
    assert all(
        (time.hour, time.minute, time.second) == (3, 0, 0)
        for time in created.info.next_action_times
    )


async def test_ensuring_a_changed_schedule_updates_it_and_keeps_it_paused(
    temporal_env: WorkflowEnvironment, schedule: ScheduleHandle
) -> None:
    client = temporal_env.client
    await ensure_retention_schedule(
        client, task_queue="reelflow-a", older_than=RETENTION, delete_objects=False
    )
    await schedule.pause(note="paused by an operator")

    await ensure_retention_schedule(
        client, task_queue="reelflow-b", older_than=timedelta(days=7), delete_objects=True
    )

    described = await schedule.describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.task_queue == "reelflow-b"
    assert await _scheduled_input(client, schedule) == PurgeInput(
        older_than_s=timedelta(days=7).total_seconds(), delete_objects=True
    )
    assert described.info.last_updated_at is not None
    assert described.schedule.state.paused
    assert described.schedule.state.note == "paused by an operator"
