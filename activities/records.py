"""Activities that record state transitions in PostgreSQL."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal

from prometheus_client import Counter
from temporalio import activity

from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.db.models import ExecutionJob
from reelflow.metrics import ESTIMATED_COST_USD, JOBS_COMPLETED, JOBS_FAILED
from reelflow.providers.registry import get_model
from reelflow.types import ExecutionUpdate, JobStatus, JobUpdate

__all__ = ["RecordActivities"]

logger = logging.getLogger(__name__)

# The statuses counted per provider and model (provider jobs only: media jobs have neither).
_COUNTED: dict[JobStatus, Counter] = {
    JobStatus.COMPLETED: JOBS_COMPLETED,
    JobStatus.FAILED: JOBS_FAILED,
}


def _provider_and_model(job: ExecutionJob) -> tuple[str, str] | None:
    # Media jobs (concat, thumbnail) have neither, and are not counted.
    return (job.provider, job.model_id) if job.provider and job.model_id else None


class RecordActivities:
    """Database writes made by the workflows."""

    def __init__(self, *, db: Database) -> None:
        self._db = db

    @activity.defn(name="record_job_update")
    async def record_job(self, update: JobUpdate) -> None:
        """Write a job's new status (with outputs or error); a completed job gets its cost."""
        await self.write_job_update(update)

    async def write_job_update(self, update: JobUpdate) -> None:
        """What `record_job` does, for activities that finish a job themselves."""
        async with self._db.session() as session:
            job = None
            if update.status in _COUNTED:
                job = await repository.get_job(session=session, job_record_id=update.job_record_id)
            # Counted on the transition only: a retried attempt finds the status written.
            counted = _provider_and_model(job) if job and job.status != update.status else None
            cost = None
            if job is not None and update.status is JobStatus.COMPLETED:
                update, cost = self._with_cost(job, update)
            await repository.apply_job_update(session=session, update_=update, cost_usd=cost)
        if counted is not None:
            _COUNTED[update.status].labels(*counted).inc()
            if cost is not None:
                ESTIMATED_COST_USD.labels(*counted).inc(float(cost))
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
    def _with_cost(job: ExecutionJob, update: JobUpdate) -> tuple[JobUpdate, Decimal | None]:
        model = get_model(job.model_id or "")
        if model is None:
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
