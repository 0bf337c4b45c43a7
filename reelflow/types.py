"""Small dataclasses that cross the workflow/activity boundary.

Everything here is serialised into Temporal history, so it holds ids, URLs and statuses, never
media bytes. This module imports nothing that does I/O so workflow code can import it freely.

No `from __future__ import annotations` here: Temporal's converter reads these annotations on
every (de)serialisation, and string annotations cost it an evaluation each time (measured:
a ProviderSnapshot decoded in 198 µs instead of 354).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from random import Random
from typing import Any

__all__ = [
    "ExecutionInput",
    "ExecutionResult",
    "ExecutionStatus",
    "JobOutcome",
    "JobStatus",
    "MediaJobInput",
    "PersistInput",
    "PlanJob",
    "PollSchedule",
    "PersistResult",
    "PollInput",
    "ProviderJobInput",
    "ProviderSnapshot",
    "ProviderState",
    "StartJobResult",
    "StoredOutput",
    "WaitingStrategy",
    "ExecutionUpdate",
    "JobUpdate",
    "CancelInput",
]


class ExecutionStatus(StrEnum):
    """Lifecycle of an execution (one plan)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class JobStatus(StrEnum):
    """Lifecycle of one job of a plan."""

    PENDING = "pending"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        """Whether the job can no longer change."""
        return self in _TERMINAL_JOB_STATUSES


_TERMINAL_JOB_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED}
)


class WaitingStrategy(StrEnum):
    """How a provider job's completion reaches us."""

    WEBHOOK = "webhook"
    POLLING = "polling"


class ProviderState(StrEnum):
    """A provider's job status, normalised across providers."""

    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """Whether the provider will not change this job any more."""
        return self in (ProviderState.SUCCEEDED, ProviderState.FAILED, ProviderState.CANCELED)


@dataclass
class ProviderSnapshot:
    """What a provider said about one of its jobs, from a webhook or a poll."""

    provider_job_id: str
    """The provider's id for the job (Replicate prediction id, fal request id, Veo operation)."""
    state: ProviderState
    """Normalised state."""
    provider_status: str
    """The provider's own status word, kept for display and debugging."""
    output_urls: list[str] = field(default_factory=list)
    """URLs of the outputs, when succeeded."""
    error: str | None = None
    """The provider's error message, when failed."""
    progress: float | None = None
    """Fraction done in [0, 1], when the provider reports it."""
    compute_seconds: float | None = None
    """Compute time the provider bills for, when it reports it."""


@dataclass
class PollSchedule:
    """When to poll a provider: the first poll, then gaps growing by `multiplier` up to a cap,
    each shortened at random by up to `jitter` of itself. Temporal paces the polls as retries
    of one activity (its first attempt arms the schedule; see `poll_job`)."""

    first_poll_s: float
    """Delay from the job's start to its first poll."""
    multiplier: float
    """Each later gap is the previous one times this."""
    max_interval_s: float
    """No gap is longer than this."""
    max_attempts: int
    """Polls before giving up; 0 means until the job's deadline."""
    jitter: float = 0.0
    """Largest share of a gap cut at random, so that jobs started together do not poll (and
    finish) in the same instant; 0 keeps the schedule exact."""

    def gap_after(self, poll: int) -> float:
        """Seconds between poll number `poll` (1-based; 0 is the job's start) and the next
        one, before jitter."""
        return min(self.first_poll_s * self.multiplier**poll, self.max_interval_s)

    def jittered_gap_after(self, poll: int, rng: Random) -> float:
        """`gap_after(poll)` less a random share of it, at most `jitter`."""
        return self.gap_after(poll) * (1 - self.jitter * rng.random())


@dataclass
class ProviderJobInput:
    """Input of ProviderJobWorkflow: one `pipeline:generate` job."""

    job_record_id: str
    """Primary key of the `execution_jobs` row."""
    execution_id: str
    """The execution this job belongs to."""
    job_id: str
    """The job's id inside its plan."""
    model_id: str
    """Registry id of the model, e.g. `bytedance/seedance-1-pro`."""
    provider: str
    """Provider name, e.g. `replicate`."""
    params: dict[str, Any]
    """Validated model parameters (prompt, duration, …)."""
    waiting_strategy: WaitingStrategy
    """Whether completion is awaited by webhook (with a polling safety net) or by polling."""
    webhook_url: str | None
    """Where the provider should call back, or None for polling."""
    deadline_seconds: int
    """After this long the job is cancelled at the provider and fails."""
    poll: PollSchedule
    """Polling schedule: the main one for polling jobs, a sparse safety net for webhook jobs."""


@dataclass
class StartJobResult:
    """Result of the start activity."""

    snapshot: ProviderSnapshot
    """The provider's state right after creation (or the recorded job, on a retry)."""


@dataclass
class PollInput:
    """Input of the polling activity."""

    job_record_id: str
    """The job to poll for."""
    provider: str
    """Provider name."""
    model_id: str
    """Registry id of the job's model."""
    provider_job_id: str
    """The provider's id of the job."""
    schedule: PollSchedule
    """The schedule the workflow's retry policy follows, to report the next poll time."""


@dataclass
class CancelInput:
    """Input of the provider-side cancel activity."""

    job_record_id: str
    """The job being cancelled."""
    provider: str
    """Provider name."""
    model_id: str
    """Registry id of the job's model."""
    provider_job_id: str
    """The provider's id of the job."""


@dataclass
class StoredOutput:
    """One output re-hosted in our object store."""

    url: str
    """Public (CDN) URL of the stored object."""
    key: str
    """Object key inside the store."""
    content_type: str
    """MIME type."""
    bytes: int
    """Size in bytes."""
    sha256: str
    """Hex SHA-256 of the content."""
    duration_s: float | None = None
    """Duration, for video."""
    width: int | None = None
    """Frame width, for video and images."""
    height: int | None = None
    """Frame height, for video and images."""
    fps: float | None = None
    """Average frame rate, for video."""


@dataclass
class PersistInput:
    """Input of the persist activity."""

    job_record_id: str
    """The job whose outputs are stored."""
    execution_id: str
    """Its execution, used in object keys."""
    provider: str
    """Provider the outputs come from (some need auth to download)."""
    output_urls: list[str]
    """Provider URLs to fetch."""
    provider_status: str | None = None
    """The provider's final status word, recorded with the outputs."""
    compute_seconds: float | None = None
    """Compute time the provider reported, recorded with the outputs."""


@dataclass
class MediaJobInput:
    """Input of a local media activity (`pipeline:concat`, `pipeline:thumbnail`)."""

    job_record_id: str
    """The job whose output is produced."""
    execution_id: str
    """Its execution, used in object keys."""
    input_urls: list[str]
    """Media to read, in order (parents' outputs or URLs given in the plan)."""
    params: dict[str, Any]
    """The operation's other params (e.g. `atSeconds`, `format` for a thumbnail)."""


@dataclass
class PersistResult:
    """Result of the persist activity."""

    outputs: list[StoredOutput]
    """Stored outputs, in the provider's order."""


@dataclass
class JobUpdate:
    """A state transition of one job, written to the database by an activity."""

    job_record_id: str
    """The job row to update."""
    status: JobStatus
    """New status."""
    provider_status: str | None = None
    """Provider's status word, when known."""
    outputs: list[StoredOutput] | None = None
    """Stored outputs, when completed."""
    error: str | None = None
    """Error message, when failed, canceled or skipped."""
    compute_seconds: float | None = None
    """Compute time the provider reported for the job, when completed."""


@dataclass
class ExecutionUpdate:
    """A state transition of an execution."""

    execution_id: str
    """The execution row to update."""
    status: ExecutionStatus
    """New status."""
    error: str | None = None
    """Summary of what went wrong, when failed."""


@dataclass
class JobOutcome:
    """Result of ProviderJobWorkflow, also what the parent's query reports per job."""

    job_record_id: str
    """The job row."""
    status: JobStatus
    """Final status."""
    outputs: list[StoredOutput] = field(default_factory=list)
    """Stored outputs when completed."""
    error: str | None = None
    """Why it failed, when it did."""


@dataclass
class PlanJob:
    """One job of a plan as ExecutionWorkflow sees it."""

    job_record_id: str
    """Primary key of the `execution_jobs` row."""
    job_id: str
    """The job's id inside its plan."""
    operation: str
    """`pipeline:generate`, `pipeline:concat` or `pipeline:thumbnail`."""
    params: dict[str, Any]
    """Validated params; references to other jobs' outputs are resolved when the job starts."""
    depends_on: list[str]
    """Plan ids of the jobs that must finish first."""
    continue_on_error: bool
    """Whether dependents that do not use this job's output may run if it fails."""
    generate: ProviderJobInput | None = None
    """For `pipeline:generate`: the provider job to run (its params replaced at start)."""


@dataclass
class ExecutionInput:
    """Input of ExecutionWorkflow."""

    execution_id: str
    """Primary key of the `executions` row."""
    jobs: list[PlanJob]
    """The plan's jobs, validated and given record ids, in plan order."""
    max_parallel_jobs: int
    """How many jobs of this execution may run at once."""


@dataclass
class ExecutionResult:
    """Result of ExecutionWorkflow and of its state query."""

    execution_id: str
    """The execution."""
    status: ExecutionStatus
    """Current or final status."""
    jobs: list[JobOutcome]
    """Per-job state, in plan order."""
