"""Activities that record state transitions in PostgreSQL."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.providers.registry import get_model
from reelflow.types import ExecutionUpdate, JobStatus, JobUpdate

__all__ = ["RecordActivities"]

logger = logging.getLogger(__name__)


class RecordActivities:
    """Database writes made by the workflows."""

    def __init__(self, *, db: Database) -> None:
        self._db = db

    @activity.defn(name="record_job_update")
    async def record_job(self, update: JobUpdate) -> None:
        """Write a job's new status (with outputs or error); a completed job gets its cost."""
        async with self._db.session() as session:
            cost = None
            if update.status is JobStatus.COMPLETED:
                update, cost = await self._with_cost(session, update)
            await repository.apply_job_update(session=session, update_=update, cost_usd=cost)
        if update.status is JobStatus.COMPLETED:
            logger.info("[AsyncJobCompletion] Job %s marked as completed", update.job_record_id)
        else:
            logger.info(
                "Job %s marked as %s%s",
                update.job_record_id,
                update.status.value,
                f": {update.error}" if update.error else "",
            )

    @staticmethod
    async def _with_cost(
        session: AsyncSession, update: JobUpdate
    ) -> tuple[JobUpdate, Decimal | None]:
        job = await repository.get_job(session=session, job_record_id=update.job_record_id)
        model = get_model(job.model_id or "") if job is not None else None
        if job is None or model is None:
            return update, None
        if update.compute_seconds is None and not model.reports_compute_time:
            update = replace(update, compute_seconds=model.clip_seconds(job.params))
        return update, model.estimate_cost(job.params)

    @activity.defn(name="record_execution_update")
    async def record_execution(self, update: ExecutionUpdate) -> None:
        """Write an execution's new status."""
        async with self._db.session() as session:
            await repository.apply_execution_update(session=session, update_=update)
        logger.info("Execution %s marked as %s", update.execution_id, update.status.value)
