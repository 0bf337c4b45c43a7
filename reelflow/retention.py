"""Retention: delete finished executions, their jobs and their stored outputs past a cutoff.

`reelflow cleanup` and the daily `RetentionWorkflow` (see `workflows.retention`) both call
`purge_finished_executions`. Only completed, failed and canceled executions are ever deleted;
queued and running ones are never touched, however old.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.storage.base import InvalidKey, ObjectNotFound, ObjectStore

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "InvalidDuration",
    "PurgeReport",
    "parse_duration",
    "purge_finished_executions",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
"""Executions deleted per transaction, so a large backlog never holds locks for long."""

# Objects deleted at once; each delete is one request (S3) or one unlink (local directory).
_OBJECT_DELETE_CONCURRENCY = 8

# ASCII digits only (`\d` would accept other scripts' digits), no leading zero, no sign.
_DURATION = re.compile(r"([1-9][0-9]*)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class InvalidDuration(ValueError):
    """A duration is not a positive whole number followed by `d`, `h` or `m`."""


def parse_duration(text: str) -> timedelta:
    """Parse a retention age such as `30d`, `12h` or `90m`.

    Args:
        text: A positive whole number (no sign, no leading zero) directly followed by `d` (days),
            `h` (hours) or `m` (minutes); nothing else, not even spaces.

    Returns:
        The duration.

    Raises:
        InvalidDuration: `text` has any other form, or is too long to represent.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise InvalidDuration(
            f"invalid duration {text!r}: expected a positive whole number followed by "
            "d (days), h (hours) or m (minutes), e.g. 30d, 12h or 90m"
        )
    number, unit = match.groups()
    try:
        return timedelta(**{_UNITS[unit]: int(number)})
    except OverflowError as exc:
        raise InvalidDuration(f"invalid duration {text!r}: too long") from exc


@dataclass
class PurgeReport:
    """What a purge deleted or, on a dry run, would delete."""

    cutoff: datetime
    """Executions that finished before this instant (UTC) qualify."""
    dry_run: bool
    """Whether nothing was deleted, only counted."""
    executions: int = 0
    """Finished executions deleted."""
    jobs: int = 0
    """Their jobs, deleted with them."""
    objects: int = 0
    """Stored outputs deleted (those already missing included); 0 unless objects are deleted."""
    webhook_deliveries: int | None = None
    """Webhook deliveries received before the cutoff deleted; None when there is no such table."""
    batches: int = 0
    """Batches of executions gone through."""


async def purge_finished_executions(
    *,
    db: Database,
    store: ObjectStore,
    older_than: timedelta,
    delete_objects: bool,
    dry_run: bool,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[PurgeReport], None] | None = None,
) -> PurgeReport:
    """Delete executions that finished more than `older_than` ago, in batches.

    Each batch lists up to `batch_size` finished executions, oldest first, deletes the objects
    their jobs' outputs reference (with `delete_objects`), then deletes the executions in one
    short transaction (their jobs go with them: the foreign key cascades). Objects go first:
    once the rows are gone nothing remembers the keys, whereas rows whose objects are already
    gone are deleted again by the next run. Webhook deliveries received before the cutoff are
    deleted too, in batches, when the `webhook_deliveries` table exists.

    Args:
        db: The database.
        store: The object store holding the outputs.
        older_than: Age, measured from `completed_at`, past which an execution is deleted.
        delete_objects: Whether to delete the stored outputs too.
        dry_run: Count what would be deleted, and delete nothing.
        batch_size: Executions (and webhook deliveries) per transaction.
        on_batch: Called with the running totals after each batch (e.g. to heartbeat).

    Returns:
        The totals.

    Raises:
        ValueError: `older_than` or `batch_size` is not positive.
        StorageError: an object could not be deleted (a missing one is fine); the executions of
            that batch are kept, so a later run retries them.
    """
    if older_than <= timedelta(0):
        raise ValueError(f"older_than must be positive, not {older_than}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    try:
        cutoff = repository.utcnow() - older_than
    except OverflowError:
        # Before year 1: nothing finished that long ago.
        cutoff = datetime.min.replace(tzinfo=UTC)
    report = PurgeReport(cutoff=cutoff, dry_run=dry_run)

    after: tuple[datetime, str] | None = None
    while True:
        async with db.session() as session:
            page = await repository.list_finished_executions_before(
                session=session, cutoff=cutoff, after=after, limit=batch_size
            )
            if not page:
                break
            ids = [execution_id for _, execution_id in page]
            outputs = (
                await repository.list_job_outputs(session=session, execution_ids=ids)
                if delete_objects
                else []
            )
            job_counts = (
                await repository.count_jobs(session=session, execution_ids=ids) if dry_run else {}
            )
        keys = _object_keys(outputs)
        after = page[-1]
        if dry_run:
            executions, jobs, objects = len(ids), sum(job_counts.values()), len(keys)
        else:
            objects = await _delete_objects(store, keys)
            async with db.session() as session:
                executions, jobs = await repository.delete_finished_executions(
                    session=session, execution_ids=ids, cutoff=cutoff
                )
        report.executions += executions
        report.jobs += jobs
        report.objects += objects
        report.batches += 1
        logger.info(
            "Retention batch %d (finished before %s): %s %d execution(s), %d job(s), %d object(s)",
            report.batches,
            cutoff.isoformat(),
            "would delete" if dry_run else "deleted",
            executions,
            jobs,
            objects,
        )
        if on_batch is not None:
            on_batch(report)
        if len(page) < batch_size:
            break

    report.webhook_deliveries = await _purge_webhook_deliveries(
        db, report, batch_size=batch_size, on_batch=on_batch
    )
    return report


def _object_keys(outputs: list[dict[str, Any]]) -> list[str]:
    """The distinct object keys recorded in these outputs, sorted."""
    keys: set[str] = set()
    for output in outputs:
        key = output.get("key") if isinstance(output, dict) else None
        if isinstance(key, str) and key:
            keys.add(key)
        else:
            logger.warning("Retention: an output has no object key, nothing to delete: %r", output)
    return sorted(keys)


async def _delete_objects(store: ObjectStore, keys: list[str]) -> int:
    """Delete these objects, a few at a time; returns how many were deleted (or missing)."""
    limit = asyncio.Semaphore(_OBJECT_DELETE_CONCURRENCY)

    async def delete(key: str) -> bool:
        async with limit:
            try:
                await store.delete(key)
            except ObjectNotFound:
                pass
            except InvalidKey:
                # Never one of ours: every key was validated when the object was stored.
                logger.warning("Retention: skipping invalid object key %r", key)
                return False
        return True

    # Every delete finishes (or fails) before the batch goes on: none is left running behind.
    results = await asyncio.gather(*(delete(key) for key in keys), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return sum(1 for result in results if result is True)


async def _purge_webhook_deliveries(
    db: Database,
    report: PurgeReport,
    *,
    batch_size: int,
    on_batch: Callable[[PurgeReport], None] | None,
) -> int | None:
    """Delete (or count) webhook deliveries received before the cutoff, in batches; None when
    the `webhook_deliveries` table does not exist."""
    async with db.session() as session:
        if not await repository.webhook_deliveries_exist(session=session):
            return None
        if report.dry_run:
            return await repository.count_webhook_deliveries_before(
                session=session, cutoff=report.cutoff
            )
    deleted = 0
    while True:
        async with db.session() as session:
            count = await repository.delete_webhook_deliveries_before(
                session=session, cutoff=report.cutoff, limit=batch_size
            )
        deleted += count
        report.webhook_deliveries = deleted
        if on_batch is not None:
            on_batch(report)
        if count < batch_size:
            break
    if deleted:
        logger.info("Retention: deleted %d webhook delivery record(s)", deleted)
    return deleted
