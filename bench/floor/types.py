"""Inputs and outputs of the floor workflow and its activities (no I/O imports)."""

from __future__ import annotations

from dataclasses import dataclass, field

from reelflow.types import PollSchedule

__all__ = [
    "BranchTiming",
    "FloorEvent",
    "FloorInput",
    "FloorResult",
    "FloorStart",
    "FloorStarted",
    "PersistInput",
    "PollInput",
    "PollResult",
]


@dataclass
class FloorInput:
    """One floor workflow: `branches` jobs, each start → wait (signal and/or poll) → persist →
    record, between two execution records (as an ExecutionWorkflow with its jobs)."""

    branches: int = 1
    """Jobs run in parallel, as children of an execution would be."""
    wrap: bool = True
    """Record the execution before and after the jobs (two more activities, as reelflow does)."""
    provider_seconds: float = 0.0
    """Time from a job's start until the "provider" has finished it."""
    provider_jitter_seconds: float = 0.0
    """Each job's provider time varies uniformly by up to this much either way."""
    webhook: bool = True
    """Whether the provider signals the workflow when it finishes (else only polling sees it)."""
    poll: PollSchedule = field(default_factory=lambda: PollSchedule(60.0, 1.0, 60.0, 0))
    """When the poll activity polls (reelflow's schedule type, jitter included)."""
    copy_url: str | None = None
    """When set, each persist streams this URL into `copy_dir` (a plain copy, fsynced)."""
    copy_dir: str | None = None
    """Where the persist activity writes its copy."""
    hold: bool = False
    """Stay open after the jobs until the `release` signal (for the status-read floor)."""


@dataclass
class FloorEvent:
    """The "webhook": provider finished a branch's job."""

    branch: int
    """Which job."""
    sent_at: float
    """Wall-clock time (Unix seconds) when the signal was sent."""


@dataclass
class FloorStart:
    """Input of the start activity."""

    workflow_id: str
    """The workflow to signal."""
    branch: int
    """Which job."""
    provider_seconds: float
    """Time until the provider finishes."""
    webhook: bool
    """Whether to signal the workflow then."""


@dataclass
class FloorStarted:
    """Result of the start activity."""

    finishes_at: float
    """Wall-clock time at which the provider finishes the job."""


@dataclass
class PollInput:
    """Input of the poll activity."""

    finishes_at: float
    """The provider's finishing time; before it, a poll fails and is retried on schedule."""
    schedule: PollSchedule
    """The schedule, whose jittered gaps the still-running failures ask for."""


@dataclass
class PollResult:
    """A poll that found the job finished."""

    finished_at: float
    """When the provider finished."""
    scheduled_at: float
    """When Temporal scheduled this (successful) attempt: the scheduled poll time."""


@dataclass
class PersistInput:
    """Input of the persist activity."""

    branch: int
    """Which job."""
    copy_url: str | None = None
    """URL to stream into `copy_dir`, or None for nothing."""
    copy_dir: str | None = None
    """Destination directory of the copy."""


@dataclass
class BranchTiming:
    """What one branch measured."""

    branch: int
    """Which job."""
    finished_at: float
    """When the provider finished (signal sent, or provider finishing time seen by a poll)."""
    scheduled_poll_at: float | None
    """The scheduled time of the poll that saw it finish; None when the signal won."""
    done_at: float
    """When the record activity (the job's last) finished."""


@dataclass
class FloorResult:
    """Result of a floor workflow."""

    branches: list[BranchTiming] = field(default_factory=list)
    """Each job's timings, by branch number."""
