"""The retention activity: deletes old finished executions, their jobs and their outputs.

Failures:
    invalid input           a non-positive age or batch size (not retryable)
    StorageMisconfigured    the object store cannot be used as configured (not retryable)
    other errors            database and storage trouble: retried by Temporal; every batch
                            already done stays done, so a retry only has the rest to do
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from reelflow import retention
from reelflow.db.engine import Database
from reelflow.retention import DEFAULT_BATCH_SIZE, PurgeReport
from reelflow.storage.base import ObjectStore, StorageMisconfigured

__all__ = ["PurgeInput", "RetentionActivities"]

logger = logging.getLogger(__name__)


@dataclass
class PurgeInput:
    """Input of the retention activity and of RetentionWorkflow."""

    older_than_s: float
    """Executions that finished more than this many seconds ago are deleted."""
    delete_objects: bool
    """Whether their stored outputs are deleted too."""
    dry_run: bool = False
    """Count what would be deleted, delete nothing."""
    batch_size: int = DEFAULT_BATCH_SIZE
    """Executions per transaction."""


class RetentionActivities:
    """Retention of executions and outputs, over the database and the object store."""

    def __init__(self, *, db: Database, store: ObjectStore) -> None:
        self._db = db
        self._store = store

    @activity.defn(name="purge_finished_executions")
    async def purge_finished_executions(self, purge: PurgeInput) -> PurgeReport:
        """Delete finished executions older than the input's age, heartbeating per batch."""
        # `not >` also rejects NaN.
        if not purge.older_than_s > 0 or purge.batch_size < 1:
            raise ApplicationError(
                f"invalid retention input {purge}: the age and batch size must be positive",
                type="InvalidRetention",
                non_retryable=True,
            )
        try:
            older_than = timedelta(seconds=purge.older_than_s)
        except OverflowError:
            older_than = timedelta.max  # older than anything stored
        try:
            report = await retention.purge_finished_executions(
                db=self._db,
                store=self._store,
                older_than=older_than,
                delete_objects=purge.delete_objects,
                dry_run=purge.dry_run,
                batch_size=purge.batch_size,
                # A copy: the SDK sends heartbeat details later, and the report keeps changing.
                on_batch=lambda progress: activity.heartbeat(replace(progress)),
            )
        except StorageMisconfigured as exc:
            raise ApplicationError(
                str(exc), type="StorageMisconfigured", non_retryable=True
            ) from exc
        logger.info(
            "Retention %s %d execution(s), %d job(s), %d object(s) and %s webhook delivery "
            "record(s) from before %s",
            "would delete" if report.dry_run else "deleted",
            report.executions,
            report.jobs,
            report.objects,
            "no" if report.webhook_deliveries is None else report.webhook_deliveries,
            report.cutoff.isoformat(),
        )
        return report
