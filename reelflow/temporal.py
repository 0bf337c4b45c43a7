"""The Temporal client, created once per process, and the ids reelflow gives workflows."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.runtime import Runtime
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from reelflow.config import Settings
from reelflow.types import PollSchedule

__all__ = [
    "connect",
    "execution_workflow_id",
    "job_workflow_id",
    "media_task_queue",
    "poll_retry_policy",
    "provider_task_queue",
    "workflow_runner",
]


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect to the configured Temporal frontend (traced when tracing is on; with `runtime`,
    the SDK's metrics go where that runtime exports them)."""
    # Imported here: workflow modules import this module for its ids and queue names, and the
    # sandbox should not load prometheus-client and OpenTelemetry for them.
    from reelflow.metrics import temporal_interceptors

    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        runtime=runtime,
        interceptors=temporal_interceptors(),
    )


def execution_workflow_id(execution_id: str) -> str:
    """Workflow id of an execution's ExecutionWorkflow."""
    return f"execution-{execution_id}"


def job_workflow_id(job_record_id: str) -> str:
    """Workflow id of a job's ProviderJobWorkflow."""
    return f"job-{job_record_id}"


def poll_retry_policy(schedule: PollSchedule) -> RetryPolicy:
    """The retry policy of a poll activity that the workflow starts with the job: its first
    attempt arms the schedule, each retry is a poll. The "still running" failures set each
    next delay (jittered); these intervals, the schedule without jitter, pace retries after a
    provider error."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=schedule.first_poll_s),
        backoff_coefficient=schedule.multiplier,
        maximum_interval=timedelta(seconds=schedule.max_interval_s),
        # One more attempt than polls: the arming one.
        maximum_attempts=schedule.max_attempts and schedule.max_attempts + 1,
    )


def provider_task_queue(task_queue: str, provider: str) -> str:
    """The task queue of a provider's activities: rate-limited on its own, per provider."""
    return f"{task_queue}-{provider}"


def media_task_queue(task_queue: str) -> str:
    """The task queue of the CPU-bound media activities, so they can run on workers of their own."""
    return f"{task_queue}-media"


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox reelflow's workflows run in.

    Our own packages are passed through: imported once per process rather than re-executed
    for every workflow run, which was the largest share of the worker's CPU per plan. That is
    safe because none of them does anything non-deterministic at import time or keeps mutable
    module state, and the sandbox still refuses non-deterministic calls at run time.
    """
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "activities", "reelflow", "workflows"
        )
    )
