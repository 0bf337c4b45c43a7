"""Response bodies of the HTTP API (the contract in DESIGN.md), in its camelCase."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from reelflow.db.models import Execution, ExecutionJob

__all__ = [
    "ErrorDetail",
    "ExecutionAccepted",
    "ExecutionPage",
    "ExecutionSummary",
    "ExecutionStatusView",
    "JobAccepted",
    "JobView",
    "OutputView",
    "Problem",
    "ProblemList",
]


class ErrorDetail(BaseModel):
    """A refusal other than a 422: what is wrong, in words."""

    detail: str


class Problem(BaseModel):
    """One problem with a request, located by its JSON path."""

    path: str
    message: str


class ProblemList(BaseModel):
    """A 422 answer: every problem found."""

    detail: str
    errors: list[Problem]


class JobAccepted(BaseModel):
    """A job of an accepted execution."""

    id: str
    jobRecordId: str
    status: str


class ExecutionAccepted(BaseModel):
    """The 202 answer to `POST /api/execute`."""

    executionId: str
    status: str
    statusUrl: str
    jobs: list[JobAccepted]

    @classmethod
    def of(cls, execution: Execution, jobs: list[ExecutionJob]) -> ExecutionAccepted:
        """Build from database rows."""
        return cls(
            executionId=execution.id,
            status=execution.status,
            statusUrl=f"/api/status/{execution.id}",
            jobs=[JobAccepted(id=j.job_id, jobRecordId=j.id, status=j.status) for j in jobs],
        )


class OutputView(BaseModel):
    """A stored output; videos also carry their duration, size and frame rate."""

    url: str
    contentType: str
    bytes: int
    sha256: str
    durationSeconds: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None


class JobView(BaseModel):
    """A job as `GET /api/status` shows it."""

    id: str
    jobRecordId: str
    operation: str
    dependsOn: list[str]
    modelId: str | None
    provider: str | None
    status: str
    waitingStrategy: str | None
    providerJobId: str | None
    providerJobStatus: str | None
    pollAttempts: int
    nextPollAt: datetime | None
    progress: float | None
    computeSeconds: float | None
    costUsd: float | None
    outputs: list[OutputView]
    error: str | None
    startedAt: datetime | None
    completedAt: datetime | None

    @classmethod
    def of(cls, job: ExecutionJob) -> JobView:
        """Build from a database row."""
        return cls(
            id=job.job_id,
            jobRecordId=job.id,
            operation=job.operation,
            dependsOn=job.depends_on,
            modelId=job.model_id,
            provider=job.provider,
            status=job.status,
            waitingStrategy=job.waiting_strategy,
            providerJobId=job.provider_job_id,
            providerJobStatus=job.provider_job_status,
            pollAttempts=job.poll_attempts,
            nextPollAt=job.next_poll_at,
            progress=job.progress,
            computeSeconds=job.compute_seconds,
            costUsd=float(job.cost_usd) if job.cost_usd is not None else None,
            outputs=[_output(output) for output in job.outputs],
            error=job.error,
            startedAt=job.started_at,
            completedAt=job.completed_at,
        )


def _output(stored: dict[str, Any]) -> OutputView:
    return OutputView(
        url=stored["url"],
        contentType=stored["content_type"],
        bytes=stored["bytes"],
        sha256=stored["sha256"],
        durationSeconds=stored.get("duration_s"),
        width=stored.get("width"),
        height=stored.get("height"),
        fps=stored.get("fps"),
    )


class ExecutionStatusView(BaseModel):
    """The answer to `GET /api/status/{executionId}`."""

    executionId: str
    status: str
    metadata: dict[str, Any]
    error: str | None
    createdAt: datetime
    updatedAt: datetime
    completedAt: datetime | None
    costUsd: float
    """Sum of the jobs' estimated costs so far."""
    jobs: list[JobView]
    """In plan order. The document is built by PostgreSQL (`reelflow.db.status`)."""


class ExecutionSummary(BaseModel):
    """An execution as `GET /api/executions` lists it."""

    executionId: str
    status: str
    metadata: dict[str, Any]
    jobCount: int
    error: str | None
    createdAt: datetime
    updatedAt: datetime
    completedAt: datetime | None
    statusUrl: str

    @classmethod
    def of(cls, execution: Execution, job_count: int) -> ExecutionSummary:
        """Build from a database row."""
        return cls(
            executionId=execution.id,
            status=execution.status,
            metadata=execution.meta,
            jobCount=job_count,
            error=execution.error,
            createdAt=execution.created_at,
            updatedAt=execution.updated_at,
            completedAt=execution.completed_at,
            statusUrl=f"/api/status/{execution.id}",
        )


class ExecutionPage(BaseModel):
    """One page of executions, newest first."""

    executions: list[ExecutionSummary]
    nextCursor: str | None
    """Pass as `cursor` for the next page; null on the last page."""
