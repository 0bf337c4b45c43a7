"""CancelOrphanWorkflow: stop a provider job that no job record tracks, so it stops billing."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.provider_jobs import ProviderJobActivities
    from reelflow.temporal import provider_task_queue
    from reelflow.types import CancelInput

__all__ = ["CancelOrphanWorkflow"]


@workflow.defn
class CancelOrphanWorkflow:
    """Started by the webhook route (id `orphan-<provider>-<providerJobId>`, so once per job)."""

    @workflow.run
    async def run(self, orphan: CancelInput) -> None:
        """Cancel the orphan at its provider, retrying for up to an hour."""
        workflow.logger.warning(
            "Cancelling orphan provider job %s of job %s",
            orphan.provider_job_id,
            orphan.job_record_id,
        )
        await workflow.execute_activity_method(
            ProviderJobActivities.cancel_job,
            orphan,
            task_queue=provider_task_queue(workflow.info().task_queue, orphan.provider),
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=2)),
        )
