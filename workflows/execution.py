"""ExecutionWorkflow: runs a plan's jobs as their dependencies finish."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ActivityError, CancelledError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.media import MediaActivities
    from reelflow.references import find_references, resolve_references
    from reelflow.temporal import job_workflow_id, media_task_queue
    from reelflow.types import (
        ExecutionInput,
        ExecutionResult,
        ExecutionStatus,
        ExecutionUpdate,
        JobOutcome,
        JobStatus,
        JobUpdate,
        MediaJobInput,
        PlanJob,
        ProviderJobInput,
    )
    from workflows.provider_job import ProviderJobWorkflow, failure_message
    from workflows.recording import record_execution, record_job

__all__ = [
    "EXECUTION_ID",
    "MODEL_ID",
    "PROVIDER",
    "SEARCH_ATTRIBUTES",
    "TENANT",
    "ExecutionWorkflow",
]

# Search attributes, so runs can be filtered in the Temporal Web UI and with visibility queries
# (`ExecutionId = "…"`). The server must know them: `reelflow dev` and the tests register them
# when they start the dev server; on a cluster, an operator creates them (see the README).
EXECUTION_ID = SearchAttributeKey.for_keyword("ExecutionId")
"""The execution an ExecutionWorkflow runs, or a ProviderJobWorkflow belongs to."""
TENANT = SearchAttributeKey.for_keyword("Tenant")
"""The tenant who submitted the execution."""
MODEL_ID = SearchAttributeKey.for_keyword("ModelId")
"""A ProviderJobWorkflow's model, e.g. `bytedance/seedance-1-pro`."""
PROVIDER = SearchAttributeKey.for_keyword("Provider")
"""A ProviderJobWorkflow's provider, e.g. `replicate`."""
SEARCH_ATTRIBUTES = (EXECUTION_ID, TENANT, MODEL_ID, PROVIDER)
"""Every search attribute reelflow sets; the server must have them registered (Keyword)."""

_MEDIA = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=4,
)


@workflow.defn
class ExecutionWorkflow:
    """One execution plan: each job starts once its dependencies complete, as a child workflow
    (provider jobs) or an activity on the media queue (concat, thumbnail)."""

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
            await self._run_jobs(execution, running)
        except asyncio.CancelledError:
            # Cancelling a job's task asks its child to cancel; wait until every child has
            # recorded it, so they end CANCELED rather than being closed under them.
            for task in running.values():
                task.cancel()
            if running:
                await workflow.wait(running.values())
            for job in execution.jobs:
                if not self._outcomes[job.job_id].status.terminal:
                    await self._finish(job, JobStatus.CANCELED, "the execution was canceled")
            self._status = ExecutionStatus.CANCELED
            await record_execution(
                ExecutionUpdate(execution.execution_id, ExecutionStatus.CANCELED, "canceled")
            )
            raise
        tolerated = {job.job_id for job in execution.jobs if job.continue_on_error}
        failed = [
            job.job_id
            for job in execution.jobs
            if self._outcomes[job.job_id].status is not JobStatus.COMPLETED
            and job.job_id not in tolerated
        ]
        self._status = ExecutionStatus.FAILED if failed else ExecutionStatus.COMPLETED
        summary = "; ".join(self._describe(job_id) for job_id in failed) or None
        await record_execution(ExecutionUpdate(execution.execution_id, self._status, summary))
        return self.state()

    def _describe(self, job_id: str) -> str:
        outcome = self._outcomes[job_id]
        reason = f" ({outcome.error})" if outcome.error else ""
        return f"{job_id}: {outcome.status.value}{reason}"

    async def _run_jobs(
        self, execution: ExecutionInput, running: dict[str, asyncio.Task[JobOutcome]]
    ) -> None:
        waiting = {job.job_id: job for job in execution.jobs}
        by_id = {job.job_id: job for job in execution.jobs}
        while waiting or running:
            for job in list(waiting.values()):
                parents = [by_id[dep] for dep in job.depends_on]
                if not all(self._outcomes[p.job_id].status.terminal for p in parents):
                    continue
                blockers = self._blockers(job, parents)
                if blockers:
                    del waiting[job.job_id]
                    await self._finish(
                        job,
                        JobStatus.SKIPPED,
                        f"skipped because {', '.join(blockers)} did not complete",
                    )
                elif len(running) < execution.max_parallel_jobs:
                    del waiting[job.job_id]
                    running[job.job_id] = asyncio.create_task(
                        self._run_job(execution.execution_id, job)
                    )
            if not running:
                continue
            done, _ = await workflow.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for job_id, task in list(running.items()):
                if task in done:
                    self._outcomes[job_id] = task.result()
                    del running[job_id]

    def _blockers(self, job: PlanJob, parents: list[PlanJob]) -> list[str]:
        """Parents whose failure stops `job`: all of them, unless a parent tolerates errors
        and `job` does not use its output."""
        used = {reference.job_id for _, reference in find_references(job.params)}
        return [
            parent.job_id
            for parent in parents
            if self._outcomes[parent.job_id].status is not JobStatus.COMPLETED
            and (not parent.continue_on_error or parent.job_id in used)
        ]

    async def _run_job(self, execution_id: str, job: PlanJob) -> JobOutcome:
        self._outcomes[job.job_id] = JobOutcome(job.job_record_id, JobStatus.PROCESSING)
        outputs = {
            job_id: [output.url for output in outcome.outputs]
            for job_id, outcome in self._outcomes.items()
            if outcome.status is JobStatus.COMPLETED
        }
        try:
            params = resolve_references(job.params, outputs)
        except (KeyError, ValueError) as error:
            # A workflow must not raise a plain exception (its task would retry forever).
            return await self._finish(job, JobStatus.FAILED, f"cannot resolve inputs: {error}")
        if job.generate is not None:
            return await self._run_provider_job(job, replace(job.generate, params=params))
        return await self._run_media_job(execution_id, job, params)

    async def _run_provider_job(self, job: PlanJob, child: ProviderJobInput) -> JobOutcome:
        try:
            return await workflow.execute_child_workflow(
                ProviderJobWorkflow.run,
                child,
                id=job_workflow_id(job.job_record_id),
                task_queue=workflow.info().task_queue,
                search_attributes=_child_search_attributes(child),
                static_summary=f"{job.job_id}: {child.model_id} on {child.provider}",
            )
        except ChildWorkflowError as error:
            if isinstance(error.cause, CancelledError):
                # The child recorded its own cancellation; only the outcome is ours to keep.
                return JobOutcome(job.job_record_id, JobStatus.CANCELED, error="canceled")
            return await self._finish(job, JobStatus.FAILED, failure_message(error))

    async def _run_media_job(
        self, execution_id: str, job: PlanJob, params: dict[str, object]
    ) -> JobOutcome:
        await record_job(JobUpdate(job.job_record_id, JobStatus.PROCESSING))
        inputs = params.get("inputs", [params.get("input")])
        assert isinstance(inputs, list)
        media_input = MediaJobInput(
            job_record_id=job.job_record_id,
            execution_id=execution_id,
            input_urls=[str(url) for url in inputs],
            params=params,
        )
        method = (
            MediaActivities.concat
            if job.operation == "pipeline:concat"
            else MediaActivities.thumbnail
        )
        try:
            result = await workflow.execute_activity_method(
                method,
                media_input,
                task_queue=media_task_queue(workflow.info().task_queue),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=_MEDIA,
            )
        except ActivityError as error:
            return await self._finish(job, JobStatus.FAILED, failure_message(error))
        await record_job(JobUpdate(job.job_record_id, JobStatus.COMPLETED, outputs=result.outputs))
        return JobOutcome(job.job_record_id, JobStatus.COMPLETED, outputs=result.outputs)

    async def _finish(self, job: PlanJob, status: JobStatus, reason: str) -> JobOutcome:
        await record_job(JobUpdate(job.job_record_id, status, error=reason))
        outcome = JobOutcome(job.job_record_id, status, error=reason)
        self._outcomes[job.job_id] = outcome
        return outcome


def _child_search_attributes(child: ProviderJobInput) -> TypedSearchAttributes | None:
    """The child's execution, tenant, model and provider; none when the execution carries no
    search attributes itself (started before they were registered, or by a test), since
    starting a child with attributes the server does not know would fail the workflow task."""
    parent = workflow.info().typed_search_attributes
    if parent.get(EXECUTION_ID) is None:
        return None
    pairs = [
        SearchAttributePair(EXECUTION_ID, child.execution_id),
        SearchAttributePair(MODEL_ID, child.model_id),
        SearchAttributePair(PROVIDER, child.provider),
    ]
    tenant = parent.get(TENANT)
    if tenant is not None:
        pairs.append(SearchAttributePair(TENANT, tenant))
    return TypedSearchAttributes(pairs)
