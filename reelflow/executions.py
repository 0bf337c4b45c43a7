"""Submitting executions: database rows first, then the workflow, idempotently."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from reelflow.auth import webhook_token
from reelflow.config import Settings
from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.db.models import Execution, ExecutionJob
from reelflow.plan import ValidatedPlan
from reelflow.providers.registry import get_model
from reelflow.temporal import execution_workflow_id
from reelflow.types import (
    ExecutionInput,
    ExecutionStatus,
    ExecutionUpdate,
    JobStatus,
    PlanJob,
    PollSchedule,
    ProviderJobInput,
    WaitingStrategy,
)
from workflows.execution import EXECUTION_ID, TENANT, ExecutionWorkflow

__all__ = [
    "ExecutionFinished",
    "ExecutionNotFound",
    "StartFailed",
    "cancel_execution",
    "Submission",
    "execution_input",
    "poll_schedule",
    "submit_execution",
    "webhook_url",
]

logger = logging.getLogger(__name__)

_FINISHED = frozenset(
    {ExecutionStatus.COMPLETED.value, ExecutionStatus.FAILED.value, ExecutionStatus.CANCELED.value}
)


class ExecutionNotFound(Exception):
    """No execution has this id."""


class ExecutionFinished(Exception):
    """The execution is already over; the message is its final status."""


class StartFailed(Exception):
    """The execution was recorded but its workflow could not be started."""


@dataclass(frozen=True)
class Submission:
    """The outcome of a submission."""

    execution: Execution
    """The execution row (a previous one, for a repeated Idempotency-Key)."""
    jobs: list[ExecutionJob]
    """Its jobs in plan order."""
    created: bool
    """False when the Idempotency-Key matched an earlier submission."""


def webhook_url(settings: Settings, secret: bytes, job_record_id: str) -> str | None:
    """Where providers report on a job (with the job's token), or None when they cannot
    reach us."""
    if settings.api_base_url is None:
        return None
    token = webhook_token(secret, job_record_id)
    return f"{settings.api_base_url}/api/webhooks/job/{job_record_id}?token={token}"


def poll_schedule(settings: Settings, strategy: WaitingStrategy) -> PollSchedule:
    """Polling-only jobs poll on the backoff schedule; webhook jobs poll sparsely, as a net."""
    if strategy is WaitingStrategy.POLLING:
        return PollSchedule(
            first_poll_s=settings.poll_initial_backoff_s,
            multiplier=settings.poll_backoff_multiplier,
            max_interval_s=settings.poll_max_interval_s,
            max_attempts=settings.poll_max_attempts,
            jitter=settings.poll_jitter,
        )
    return PollSchedule(
        first_poll_s=settings.webhook_safety_poll_s,
        multiplier=1.0,
        max_interval_s=settings.webhook_safety_poll_s,
        max_attempts=0,
        jitter=settings.poll_jitter,
    )


def _strategy(settings: Settings, params: dict[str, Any], capabilities: frozenset[str]) -> str:
    requested = params.get("waitingStrategy")
    if requested:
        return str(requested)
    if "webhook" in capabilities and settings.api_base_url is not None:
        return WaitingStrategy.WEBHOOK.value
    return WaitingStrategy.POLLING.value


def _rows(
    settings: Settings,
    plan: ValidatedPlan,
    raw_plan: dict[str, Any],
    tenant: str,
    idempotency_key: str | None,
) -> tuple[Execution, list[ExecutionJob]]:
    now = repository.utcnow()
    execution = Execution(
        id=str(uuid.uuid4()),
        tenant=tenant,
        status=ExecutionStatus.QUEUED.value,
        plan=raw_plan,
        meta=plan.metadata,
        idempotency_key=idempotency_key,
        created_at=now,
        updated_at=now,
    )
    jobs = [
        ExecutionJob(
            id=str(uuid.uuid4()),
            execution_id=execution.id,
            job_id=job.id,
            position=position,
            operation=job.operation,
            model_id=job.model.id if job.model else None,
            provider=job.model.provider if job.model else None,
            params=job.params,
            depends_on=list(job.depends_on),
            continue_on_error=job.continue_on_error,
            status=JobStatus.PENDING.value,
            outputs=[],
            waiting_strategy=_strategy(settings, job.params, job.model.capabilities)
            if job.model
            else None,
            created_at=now,
            updated_at=now,
        )
        for position, job in enumerate(plan.jobs)
    ]
    return execution, jobs


def execution_input(
    settings: Settings, secret: bytes, execution_id: str, jobs: list[ExecutionJob]
) -> ExecutionInput:
    """The workflow input for an execution, rebuilt from its rows."""
    return ExecutionInput(
        execution_id=execution_id,
        jobs=[
            PlanJob(
                job_record_id=job.id,
                job_id=job.job_id,
                operation=job.operation,
                params=job.params,
                depends_on=list(job.depends_on),
                continue_on_error=job.continue_on_error,
                generate=_provider_job(settings, secret, execution_id, job)
                if job.model_id
                else None,
            )
            for job in jobs
        ],
        max_parallel_jobs=settings.max_parallel_jobs,
    )


def _provider_job(
    settings: Settings, secret: bytes, execution_id: str, job: ExecutionJob
) -> ProviderJobInput:
    model = get_model(job.model_id or "")
    if model is None:
        raise ValueError(f"job {job.id} has an unknown model {job.model_id!r}")
    strategy = WaitingStrategy(job.waiting_strategy or WaitingStrategy.POLLING.value)
    return ProviderJobInput(
        job_record_id=job.id,
        execution_id=execution_id,
        job_id=job.job_id,
        model_id=model.id,
        provider=model.provider,
        params=job.params,
        waiting_strategy=strategy,
        # Polling jobs get the webhook URL too where the provider takes one: it identifies the
        # job at the provider (a retried start finds the job an earlier attempt created, and
        # orphans report in), and a webhook that does arrive only finishes the job sooner.
        webhook_url=webhook_url(settings, secret, job.id)
        if "webhook" in model.capabilities
        else None,
        deadline_seconds=model.deadline_seconds,
        poll=poll_schedule(settings, strategy),
    )


async def submit_execution(
    *,
    db: Database,
    temporal: Client,
    settings: Settings,
    webhook_secret: bytes,
    tenant: str,
    plan: ValidatedPlan,
    raw_plan: dict[str, Any],
    idempotency_key: str | None,
) -> Submission:
    """Record a validated plan and start its workflow.

    A repeated Idempotency-Key returns the earlier execution, and starts its workflow if an
    earlier attempt recorded it but died before starting it (workflow ids make that safe).

    Raises:
        StartFailed: Temporal could not be reached; the execution is marked failed.
    """
    execution, jobs = _rows(settings, plan, raw_plan, tenant, idempotency_key)
    created = True
    try:
        async with db.session() as session:
            await repository.add_execution(session=session, execution=execution, jobs=jobs)
    except IntegrityError:
        if idempotency_key is None:
            raise
        created = False
        async with db.session() as session:
            existing = await repository.get_execution_by_idempotency_key(
                session=session, tenant=tenant, idempotency_key=idempotency_key
            )
            if existing is None:
                raise
            execution = existing
            jobs = await repository.list_execution_jobs(session=session, execution_id=existing.id)
    if created or execution.status == ExecutionStatus.QUEUED.value:
        await _start_workflow(
            db=db,
            temporal=temporal,
            settings=settings,
            webhook_secret=webhook_secret,
            execution=execution,
            jobs=jobs,
        )
    return Submission(execution=execution, jobs=jobs, created=created)


async def _start_workflow(
    *,
    db: Database,
    temporal: Client,
    settings: Settings,
    webhook_secret: bytes,
    execution: Execution,
    jobs: list[ExecutionJob],
) -> None:
    try:
        await temporal.start_workflow(
            ExecutionWorkflow.run,
            execution_input(settings, webhook_secret, execution.id, jobs),
            id=execution_workflow_id(execution.id),
            task_queue=settings.task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(EXECUTION_ID, execution.id),
                    SearchAttributePair(TENANT, execution.tenant),
                ]
            ),
            static_summary=f"{len(jobs)} job(s) of tenant {execution.tenant}",
        )
    except WorkflowAlreadyStartedError:
        return
    except RPCError as error:
        logger.error("Could not start execution %s: %s", execution.id, error.message)
        if error.status is RPCStatusCode.INVALID_ARGUMENT and "search attribute" in error.message:
            logger.error(
                "Register reelflow's search attributes on namespace %s (README, 'Running in"
                " production'): temporal operator search-attribute create",
                settings.temporal_namespace,
            )
        async with db.session() as session:
            await repository.apply_execution_update(
                session=session,
                update_=ExecutionUpdate(
                    execution.id, ExecutionStatus.FAILED, "the workflow engine was unavailable"
                ),
            )
        raise StartFailed("the workflow engine is unavailable; try again") from error
    logger.info("Execution %s started with %d job(s)", execution.id, len(jobs))


async def cancel_execution(
    *, db: Database, temporal: Client, tenant: str, execution_id: str
) -> None:
    """Request cancellation of a running execution; repeating the request is harmless.

    Raises:
        ExecutionNotFound: no such execution.
        ExecutionFinished: it has already completed, failed or been canceled.
    """
    async with db.session() as session:
        execution = await repository.get_execution(
            session=session, execution_id=execution_id, tenant=tenant
        )
    if execution is None:
        raise ExecutionNotFound(execution_id)
    if execution.status in _FINISHED:
        raise ExecutionFinished(execution.status)
    try:
        await temporal.get_workflow_handle(execution_workflow_id(execution_id)).cancel()
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        raise ExecutionFinished(execution.status) from error
