"""Keyword-only repository functions: every database read and write of reelflow goes here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Text, and_, cast, delete, func, text, tuple_, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from reelflow.db.engine import Database
from reelflow.db.models import Execution, ExecutionJob, WebhookDelivery
from reelflow.types import (
    ExecutionUpdate,
    JobStatus,
    JobUpdate,
    ProviderSnapshot,
    WaitingStrategy,
)

__all__ = [
    "ExecutionChanges",
    "read_execution_changes",
    "add_execution",
    "apply_execution_update",
    "apply_job_update",
    "count_jobs",
    "claim_delivery",
    "set_delivery_outcome",
    "list_executions",
    "get_execution",
    "get_execution_by_idempotency_key",
    "get_job",
    "list_execution_jobs",
    "record_poll",
    "record_poll_due",
    "record_provider_job",
    "record_provider_progress",
    "utcnow",
]

_TERMINAL = [status.value for status in JobStatus if status.terminal]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


async def add_execution(
    *, session: AsyncSession, execution: Execution, jobs: list[ExecutionJob]
) -> None:
    """Insert an execution and its jobs (flushed, so constraint errors surface here)."""
    session.add(execution)
    await session.flush()
    session.add_all(jobs)
    await session.flush()


async def get_execution(
    *, session: AsyncSession, execution_id: str, tenant: str | None
) -> Execution | None:
    """The execution with this id, or None; with a tenant, only if it is that tenant's."""
    execution = await session.get(Execution, execution_id)
    if execution is None or (tenant is not None and execution.tenant != tenant):
        return None
    return execution


async def get_execution_by_idempotency_key(
    *, session: AsyncSession, tenant: str, idempotency_key: str
) -> Execution | None:
    """The execution this tenant submitted earlier with this Idempotency-Key, or None."""
    result = await session.execute(
        select(Execution).where(
            col(Execution.tenant) == tenant, col(Execution.idempotency_key) == idempotency_key
        )
    )
    return result.scalars().first()


async def list_executions(
    *,
    session: AsyncSession,
    tenant: str,
    status: str | None,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[Execution]:
    """Executions newest first, optionally of one status, strictly after the `before` key
    (created_at, id) of the previous page's last item: stable under concurrent inserts."""
    query = select(Execution).where(col(Execution.tenant) == tenant)
    if status is not None:
        query = query.where(col(Execution.status) == status)
    if before is not None:
        query = query.where(tuple_(col(Execution.created_at), col(Execution.id)) < tuple_(*before))
    query = query.order_by(col(Execution.created_at).desc(), col(Execution.id).desc()).limit(limit)
    result = await session.execute(query)
    return list(result.scalars().all())


async def count_jobs(*, session: AsyncSession, execution_ids: list[str]) -> dict[str, int]:
    """Number of jobs of each execution."""
    if not execution_ids:
        return {}
    result = await session.execute(
        select(col(ExecutionJob.execution_id), func.count())
        .where(col(ExecutionJob.execution_id).in_(execution_ids))
        .group_by(col(ExecutionJob.execution_id))
    )
    return {str(row[0]): int(row[1]) for row in result.all()}


async def list_execution_jobs(*, session: AsyncSession, execution_id: str) -> list[ExecutionJob]:
    """The execution's jobs in plan order."""
    result = await session.execute(
        select(ExecutionJob)
        .where(ExecutionJob.execution_id == execution_id)
        .order_by(col(ExecutionJob.position))
    )
    return list(result.scalars().all())


async def get_job(*, session: AsyncSession, job_record_id: str) -> ExecutionJob | None:
    """The job with this record id, or None."""
    return await session.get(ExecutionJob, job_record_id)


async def claim_delivery(
    *, session: AsyncSession, provider: str, delivery_id: str, job_record_id: str
) -> bool:
    """Claim a webhook delivery for handling; False when it was handled (or is being handled,
    in which case this waits for that transaction) before.

    The claim holds until the session's transaction ends: rolled back, it is released for a
    redelivery.
    """
    claimed = await session.execute(
        insert(WebhookDelivery)
        .values(
            provider=provider,
            delivery_id=delivery_id,
            job_record_id=job_record_id,
            outcome="claimed",
            received_at=utcnow(),
        )
        .on_conflict_do_nothing()
        .returning(col(WebhookDelivery.delivery_id))
    )
    return claimed.first() is not None


async def set_delivery_outcome(
    *, session: AsyncSession, provider: str, delivery_id: str, outcome: str
) -> None:
    """Record what became of a claimed delivery."""
    await session.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.provider) == provider,
            col(WebhookDelivery.delivery_id) == delivery_id,
        )
        .values(outcome=outcome)
    )


async def record_provider_job(
    *,
    session: AsyncSession,
    job_record_id: str,
    snapshot: ProviderSnapshot,
    waiting_strategy: WaitingStrategy,
) -> str:
    """Record the provider's job id for a job that has none yet.

    Returns the provider job id now on record: `snapshot.provider_job_id`, or one recorded
    earlier by a concurrent attempt, in which case the caller holds an orphan to cancel.
    """
    now = utcnow()
    result = await session.execute(
        update(ExecutionJob)
        .where(
            col(ExecutionJob.id) == job_record_id,
            col(ExecutionJob.provider_job_id).is_(None),
        )
        .values(
            provider_job_id=snapshot.provider_job_id,
            provider_job_status=snapshot.provider_status,
            waiting_strategy=waiting_strategy.value,
            status=_status_for(snapshot).value,
            progress=snapshot.progress,
            started_at=now,
            updated_at=now,
        )
        .returning(col(ExecutionJob.provider_job_id))
    )
    recorded = result.scalar_one_or_none()
    if recorded is not None:
        return str(recorded)
    job = await session.get(ExecutionJob, job_record_id)
    if job is None or job.provider_job_id is None:
        raise LookupError(f"job {job_record_id} does not exist")
    return job.provider_job_id


def _status_for(snapshot: ProviderSnapshot) -> JobStatus:
    # The provider queueing our job is still "queued" for users; anything else is under way.
    return JobStatus.QUEUED if snapshot.state == "queued" else JobStatus.PROCESSING


_TERMINAL_LIST = ", ".join(f"'{status}'" for status in _TERMINAL)

_RECORD_POLL = f"""
UPDATE execution_jobs
SET poll_attempts = $2, next_poll_at = $3, provider_job_status = $4, status = $5,
    progress = $6, updated_at = $7
WHERE id = $1 AND status NOT IN ({_TERMINAL_LIST})
"""


async def record_poll(
    *,
    db: Database,
    job_record_id: str,
    attempt: int,
    next_poll_in: timedelta | None,
    snapshot: ProviderSnapshot,
) -> None:
    """Record one poll: its attempt number, when the next one is due (`next_poll_in` from
    now; None when there is none), what the provider said.

    Written straight on asyncpg: with a thousand jobs waiting, this runs several times a
    second and is most of a poll's CPU through SQLAlchemy.
    """
    # One instant for both: the next poll is due `next_poll_in` after the row says it was
    # written, however long getting a connection took.
    now = utcnow()
    await db.fetchval(
        _RECORD_POLL,
        job_record_id,
        attempt,
        None if next_poll_in is None else now + next_poll_in,
        snapshot.provider_status,
        _status_for(snapshot).value,
        snapshot.progress,
        now,
    )


_RECORD_POLL_DUE = f"""
UPDATE execution_jobs SET next_poll_at = $2, updated_at = $3
WHERE id = $1 AND status NOT IN ({_TERMINAL_LIST})
"""


async def record_poll_due(*, db: Database, job_record_id: str, poll_in: timedelta) -> None:
    """Record when a job's first poll is due (`poll_in` from now), before any poll."""
    now = utcnow()
    await db.fetchval(_RECORD_POLL_DUE, job_record_id, now + poll_in, now)


async def record_provider_progress(
    *, session: AsyncSession, job_record_id: str, snapshot: ProviderSnapshot
) -> None:
    """Record a non-terminal provider update (a `start` or `logs` webhook) on a running job."""
    values: dict[str, Any] = {
        "provider_job_status": snapshot.provider_status,
        "updated_at": utcnow(),
        "status": _status_for(snapshot).value,
    }
    if snapshot.progress is not None:
        values["progress"] = snapshot.progress
    await session.execute(
        update(ExecutionJob)
        .where(
            col(ExecutionJob.id) == job_record_id,
            col(ExecutionJob.status).not_in(_TERMINAL),
            col(ExecutionJob.provider_job_id) == snapshot.provider_job_id,
        )
        .values(**values)
    )


async def apply_job_update(
    *, session: AsyncSession, update_: JobUpdate, cost_usd: Decimal | None = None
) -> None:
    """Move a job to a new status, with its outputs or error, compute time and cost."""
    now = utcnow()
    values: dict[str, Any] = {"status": update_.status.value, "updated_at": now}
    if update_.compute_seconds is not None:
        values["compute_seconds"] = update_.compute_seconds
    if cost_usd is not None:
        values["cost_usd"] = cost_usd
    if update_.provider_status is not None:
        values["provider_job_status"] = update_.provider_status
    if update_.error is not None:
        values["error"] = update_.error
    if update_.outputs is not None:
        values["outputs"] = [asdict(output) for output in update_.outputs]
    if update_.status is JobStatus.PROCESSING:
        values["started_at"] = func.coalesce(col(ExecutionJob.started_at), now)
    if update_.status is JobStatus.COMPLETED:
        values["progress"] = 1.0
    if update_.status.terminal:
        values["completed_at"] = now
        values["next_poll_at"] = None
    await session.execute(
        update(ExecutionJob).where(col(ExecutionJob.id) == update_.job_record_id).values(**values)
    )


async def apply_execution_update(*, session: AsyncSession, update_: ExecutionUpdate) -> None:
    """Move an execution to a new status."""
    now = utcnow()
    values: dict[str, Any] = {"status": update_.status.value, "updated_at": now}
    if update_.error is not None:
        values["error"] = update_.error
    if update_.status in ("completed", "failed", "canceled"):
        values["completed_at"] = now
    await session.execute(
        update(Execution).where(col(Execution.id) == update_.execution_id).values(**values)
    )


# Retention: finished executions (with their jobs) and webhook deliveries past a cutoff.

__all__ += [
    "count_webhook_deliveries_before",
    "delete_finished_executions",
    "delete_webhook_deliveries_before",
    "list_finished_executions_before",
    "list_job_outputs",
    "webhook_deliveries_exist",
]

_FINISHED_EXECUTION_STATUSES = ("completed", "failed", "canceled")


async def list_finished_executions_before(
    *,
    session: AsyncSession,
    cutoff: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[tuple[datetime, str]]:
    """Keys (completed_at, id) of executions that finished before `cutoff`, oldest first.

    Only completed, failed and canceled executions qualify; queued and running ones never do.
    `after` is the last key of the previous batch, so paging goes on past rows a batch did not
    delete.
    """
    query = select(col(Execution.completed_at), col(Execution.id)).where(
        col(Execution.status).in_(_FINISHED_EXECUTION_STATUSES),
        col(Execution.completed_at) < cutoff,
    )
    if after is not None:
        query = query.where(tuple_(col(Execution.completed_at), col(Execution.id)) > tuple_(*after))
    query = query.order_by(col(Execution.completed_at), col(Execution.id)).limit(limit)
    result = await session.execute(query)
    # `completed_at < cutoff` already excludes NULLs; the filter is for the type checker.
    return [(row[0], str(row[1])) for row in result.all() if row[0] is not None]


async def list_job_outputs(
    *, session: AsyncSession, execution_ids: list[str]
) -> list[dict[str, Any]]:
    """Every stored output (as recorded: url, key, contentType, …) of these executions' jobs."""
    if not execution_ids:
        return []
    result = await session.execute(
        select(col(ExecutionJob.outputs)).where(col(ExecutionJob.execution_id).in_(execution_ids))
    )
    return [output for outputs in result.scalars().all() for output in outputs or []]


async def delete_finished_executions(
    *, session: AsyncSession, execution_ids: list[str], cutoff: datetime
) -> tuple[int, int]:
    """Delete those of these executions that are still finished before `cutoff`, with their jobs.

    The condition is checked again here, so an id listed earlier is never deleted if its
    execution changed since. Returns (executions deleted, jobs deleted with them).
    """
    if not execution_ids:
        return 0, 0
    condition = (
        col(Execution.id).in_(execution_ids),
        col(Execution.status).in_(_FINISHED_EXECUTION_STATUSES),
        col(Execution.completed_at) < cutoff,
    )
    # Lock the rows first so the job count matches what the cascade removes.
    locked = await session.execute(select(col(Execution.id)).where(*condition).with_for_update())
    ids = [str(row) for row in locked.scalars().all()]
    if not ids:
        return 0, 0
    jobs = await count_jobs(session=session, execution_ids=ids)
    # `execution_jobs` rows go with their execution: the foreign key cascades.
    await session.execute(delete(Execution).where(col(Execution.id).in_(ids)))
    return len(ids), sum(jobs.values())


async def webhook_deliveries_exist(*, session: AsyncSession) -> bool:
    """Whether the `webhook_deliveries` table exists (migration 0007 adds it)."""
    result = await session.execute(select(func.to_regclass("webhook_deliveries").is_not(None)))
    return bool(result.scalar_one())


async def count_webhook_deliveries_before(*, session: AsyncSession, cutoff: datetime) -> int:
    """Number of webhook deliveries received before `cutoff`."""
    result = await session.execute(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(col(WebhookDelivery.received_at) < cutoff)
    )
    return int(result.scalar_one())


async def delete_webhook_deliveries_before(
    *, session: AsyncSession, cutoff: datetime, limit: int
) -> int:
    """Delete up to `limit` webhook deliveries received before `cutoff`; returns how many."""

    key = tuple_(col(WebhookDelivery.provider), col(WebhookDelivery.delivery_id))
    batch = (
        select(col(WebhookDelivery.provider), col(WebhookDelivery.delivery_id))
        .where(col(WebhookDelivery.received_at) < cutoff)
        .limit(limit)
    )
    result = await session.execute(
        delete(WebhookDelivery).where(key.in_(batch)).returning(col(WebhookDelivery.delivery_id))
    )
    return len(result.all())


# Live change feed (reelflow.live): one query per read for an execution and its changed rows.

# A row version's 64-bit transaction id, from its 32-bit `xmin`: the latest id at or below the
# reading snapshot's xmax with those low bits (right for any row written in the last 2**32
# transactions). Ids below 3 are frozen or bootstrap rows: visible to every snapshot.
_ROW_XID8 = (
    "(pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
    " - ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint - {table}.xmin::text::bigint)"
    " % 4294967296))::text::xid8"
)


def _visible(table: str, snapshot: str) -> str:
    """SQL: whether the row's current version was committed as of the snapshot bound there."""
    return (
        f"({table}.xmin::text::bigint < 3 OR pg_visible_in_snapshot("
        f"{_ROW_XID8.format(table=table)}, CAST(:{snapshot} AS pg_snapshot)))"
    )


def _unseen(
    table: str, rank: str, received: Sequence[tuple[str, int | None]]
) -> tuple[str, dict[str, Any]]:
    """SQL (and its parameters): no (snapshot, rank) pair covers the row's current version."""
    conditions: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    for index, (snapshot, up_to) in enumerate(received):
        name = f"{table}_snapshot_{index}"
        params[name] = snapshot
        if up_to is None:
            conditions.append(f"NOT {_visible(table, name)}")
        else:
            params[f"{table}_rank_{index}"] = up_to
            conditions.append(f"NOT ({rank} <= :{table}_rank_{index} AND {_visible(table, name)})")
    return " AND ".join(conditions), params


@dataclass(frozen=True)
class ExecutionChanges:
    """What one read of an execution's change feed found."""

    execution: Execution
    """The execution row, whether or not it changed."""
    execution_changed: bool
    """Whether the client does not have the execution row as it is now."""
    jobs: list[ExecutionJob]
    """The jobs the client does not have as they are now, in plan order."""
    cost_usd: Decimal
    """Sum of every job's cost, as stored now."""
    snapshot: str
    """The reading statement's MVCC snapshot (`pg_current_snapshot()`), as text."""


async def read_execution_changes(
    *,
    session: AsyncSession,
    execution_id: str,
    received: Sequence[tuple[str, int | None]],
) -> ExecutionChanges | None:
    """The execution and those of its rows a client does not have yet; None if it is gone.

    Args:
        received: What the client has, as (snapshot, rank) pairs: for each, every row of rank
            <= rank (0 for the execution, position + 1 for a job; None: every row) as it was
            in that snapshot (`pg_snapshot` text). A row's current version that no pair's
            snapshot sees, or whose rank is past the pair's, is one it lacks. Empty: it has
            nothing, and every row is returned.

    One round trip: the execution row, with whether the client lacks it, left-joined with the
    jobs it lacks (in plan order), with the cost sum and the snapshot the statement read with.
    """

    jobs_unseen, job_params = _unseen("execution_jobs", "(execution_jobs.position + 1)", received)
    execution_unseen, execution_params = _unseen("executions", "0", received)
    costed = aliased(ExecutionJob)
    cost = (
        select(func.coalesce(func.sum(col(costed.cost_usd)), 0))
        .where(col(costed.execution_id) == execution_id)
        .scalar_subquery()
    )
    # sqlmodel's `select` types at most four columns.
    result = await session.execute(
        select_columns(
            Execution,
            ExecutionJob,
            text(f"({execution_unseen})").bindparams(**execution_params),
            cost,
            cast(func.pg_current_snapshot(), Text),
        )
        .outerjoin(
            ExecutionJob,
            and_(
                col(ExecutionJob.execution_id) == col(Execution.id),
                text(jobs_unseen).bindparams(**job_params),
            ),
        )
        .where(col(Execution.id) == execution_id)
        .order_by(col(ExecutionJob.position))
    )
    rows = result.all()
    if not rows:
        return None
    execution, _, execution_changed, cost_usd, snapshot = rows[0]
    return ExecutionChanges(
        execution=execution,
        execution_changed=bool(execution_changed),
        jobs=[row[1] for row in rows if row[1] is not None],
        cost_usd=Decimal(cost_usd),
        snapshot=str(snapshot),
    )
