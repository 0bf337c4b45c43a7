"""ExecutionWorkflow: runs a plan's jobs as their dependencies finish."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from reelflow.temporal import job_workflow_id
    from reelflow.types import (
        ExecutionInput,
        ExecutionResult,
        ExecutionStatus,
        ExecutionUpdate,
        JobOutcome,
        JobStatus,
        JobUpdate,
        ProviderJobInput,
    )
    from workflows.provider_job import ProviderJobWorkflow
    from workflows.recording import record_execution, record_job

__all__ = ["ExecutionWorkflow"]


@workflow.defn
class ExecutionWorkflow:
    """One execution plan: each job starts as a child workflow once its dependencies complete."""

    def __init__(self) -> None:
        self._status = ExecutionStatus.QUEUED
        self._execution_id = ""
        self._outcomes: dict[str, JobOutcome] = {}

    @workflow.query
    def state(self) -> ExecutionResult:
        """Live state of the execution and of every job."""
        return ExecutionResult(self._execution_id, self._status, list(self._outcomes.values()))

    @workflow.run
    async def run(self, execution: ExecutionInput) -> ExecutionResult:
        """Run every job, then record the execution's final status."""
        self._execution_id = execution.execution_id
        self._outcomes = {
            job.job_id: JobOutcome(job.job_record_id, JobStatus.PENDING) for job in execution.jobs
        }
        await record_execution(ExecutionUpdate(execution.execution_id, ExecutionStatus.RUNNING))
        self._status = ExecutionStatus.RUNNING
        running: dict[str, asyncio.Task[JobOutcome]] = {}
        try:
            await self._run_jobs(execution.jobs, running)
        except asyncio.CancelledError:
            # Cancelling a job's task asks its child to cancel; wait until every child has
            # recorded it, so they end CANCELED rather than being closed under them.
            for task in running.values():
                task.cancel()
            await workflow.wait(running.values())
            for job in execution.jobs:
                if not self._outcomes[job.job_id].status.terminal:
                    await self._mark(job, JobStatus.CANCELED, "the execution was canceled")
            self._status = ExecutionStatus.CANCELED
            await record_execution(
                ExecutionUpdate(execution.execution_id, ExecutionStatus.CANCELED, "canceled")
            )
            raise
        failed = [
            job_id
            for job_id, outcome in self._outcomes.items()
            if outcome.status is not JobStatus.COMPLETED
        ]
        self._status = ExecutionStatus.FAILED if failed else ExecutionStatus.COMPLETED
        summary = None
        if failed:
            summary = "; ".join(
                f"{job_id}: {self._outcomes[job_id].status.value}"
                + (f" ({self._outcomes[job_id].error})" if self._outcomes[job_id].error else "")
                for job_id in failed
            )
        await record_execution(ExecutionUpdate(execution.execution_id, self._status, summary))
        return self.state()

    async def _run_jobs(
        self, jobs: list[ProviderJobInput], running: dict[str, asyncio.Task[JobOutcome]]
    ) -> None:
        waiting = {job.job_id: job for job in jobs}
        while waiting or running:
            for job in list(waiting.values()):
                parents = [self._outcomes[dep].status for dep in job.depends_on]
                if any(status.terminal and status is not JobStatus.COMPLETED for status in parents):
                    del waiting[job.job_id]
                    blocked = [
                        dep
                        for dep in job.depends_on
                        if self._outcomes[dep].status is not JobStatus.COMPLETED
                    ]
                    await self._mark(
                        job,
                        JobStatus.SKIPPED,
                        f"skipped because {', '.join(blocked)} did not complete",
                    )
                elif all(status is JobStatus.COMPLETED for status in parents):
                    del waiting[job.job_id]
                    running[job.job_id] = asyncio.create_task(self._run_job(job))
            if not running:
                continue
            done, _ = await workflow.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for job_id, task in list(running.items()):
                if task in done:
                    self._outcomes[job_id] = task.result()
                    del running[job_id]

    async def _run_job(self, job: ProviderJobInput) -> JobOutcome:
        self._outcomes[job.job_id] = JobOutcome(job.job_record_id, JobStatus.PROCESSING)
        try:
            return await workflow.execute_child_workflow(
                ProviderJobWorkflow.run,
                job,
                id=job_workflow_id(job.job_record_id),
                task_queue=workflow.info().task_queue,
            )
        except ChildWorkflowError as error:
            message = str(error.cause) if error.cause is not None else str(error)
            await record_job(JobUpdate(job.job_record_id, JobStatus.FAILED, error=message))
            return JobOutcome(job.job_record_id, JobStatus.FAILED, error=message)

    async def _mark(self, job: ProviderJobInput, status: JobStatus, reason: str) -> None:
        await record_job(JobUpdate(job.job_record_id, status, error=reason))
        self._outcomes[job.job_id] = JobOutcome(job.job_record_id, status, error=reason)
