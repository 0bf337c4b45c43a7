"""The lifecycle every emulated provider's jobs share: queue, run, render, end.

A provider module subclasses `Job` with what its API shows and `JobBackend` with how its API
names things; the backend runs each job in a background task — queued for a fifth of its
generation time, then running with progress logs, then failed (by `failure_rate`), withheld (by a
provider's safety filter) or rendered into real MP4s — and calls the module's `_notify` hook on
each event, which is where webhooks come from.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from fastapi import Request
from fastapi.responses import FileResponse

from reelflow.emulator.config import Provider, ProviderBehaviour
from reelflow.emulator.faults import chance, generation_seconds
from reelflow.emulator.render import VideoSpec, frame_size, render_mp4
from reelflow.emulator.state import EmulatorState, ProviderStats, get_state
from reelflow.emulator.webhooks import Signer, WebhookDelivery

__all__ = [
    "Job",
    "JobBackend",
    "JobEvent",
    "LogLine",
    "OutputFile",
    "Phase",
    "backend_dependency",
    "utc_now",
]

logger = logging.getLogger(__name__)

# A job is queued for this share of its generation time, then running.
_QUEUED_SHARE = 0.2
_PROGRESS_STEPS = 4
_OUTPUT_MEDIA_TYPE = "video/mp4"


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Phase(StrEnum):
    """Where a job is in its life, in the emulator's words; providers map it to theirs."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """Whether the job can no longer change."""
        return self not in {Phase.QUEUED, Phase.RUNNING}


class JobEvent(StrEnum):
    """What `JobBackend._notify` reports."""

    CREATED = "created"
    LOG = "log"
    FINISHED = "finished"


@dataclass(frozen=True)
class LogLine:
    """One line a job logged."""

    message: str
    """The text, without a newline."""

    at: datetime
    """When it was logged."""


@dataclass(frozen=True)
class OutputFile:
    """A file a job produced."""

    name: str
    """File name, unique within the job."""

    size: int
    """Size in bytes."""


@dataclass(kw_only=True)
class Job:
    """What every provider's job has; providers subclass it with their own fields."""

    id: str
    webhook: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    phase: Phase = Phase.QUEUED
    started_at: datetime | None = None
    completed_at: datetime | None = None
    logs: list[LogLine] = field(default_factory=list)
    outputs: list[OutputFile] = field(default_factory=list)
    error: str | None = None
    crashed: bool = False
    """Whether it failed by an emulator error rather than by `failure_rate`."""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def run_seconds(self) -> float | None:
        """Time from start to end, once both happened."""
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at).total_seconds()


J = TypeVar("J", bound=Job)


class JobBackend(ABC, Generic[J]):
    """The jobs of one provider in one emulator app, and the tasks that run them."""

    provider: ClassVar[Provider]
    """Which config and stats section applies."""

    def __init__(self, state: EmulatorState) -> None:
        """Run jobs with the shared `state` (config, outputs, webhooks, stats)."""
        self._state = state
        self._jobs: dict[str, J] = {}

    @property
    def behaviour(self) -> ProviderBehaviour:
        """The provider's config section as it is now."""
        return self._state.config.behaviour(self.provider)

    @property
    def stats(self) -> ProviderStats:
        """The provider's counters."""
        return self._state.stats[self.provider]

    def get(self, job_id: str) -> J | None:
        """The job with this id, if there is one."""
        return self._jobs.get(job_id)

    def jobs(self) -> Iterator[J]:
        """Every job, oldest first."""
        return iter(self._jobs.values())

    def start(self, job: J) -> J:
        """Record a validated job and start running it in the background."""
        self._jobs[job.id] = job
        self.stats.record_created(job.webhook)
        job.task = asyncio.create_task(self._run(job))
        logger.info("Created %s job %s", self.provider, job.id)
        self._notify(job, JobEvent.CREATED)
        return job

    def cancel(self, job: J) -> bool:
        """Stop a job that has not ended; False (and no change) if it has."""
        if job.phase.terminal:
            return False
        if job.task is not None:
            job.task.cancel()
        self.stats.canceled += 1
        self._finish(job, Phase.CANCELED)
        return True

    async def reset(self) -> None:
        """Stop every running job and forget all of them."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()

    def expired(self, job: J) -> bool:
        """Whether the job ended longer ago than `output_expiry_seconds` (read now)."""
        expiry = self.behaviour.output_expiry_seconds
        return (
            expiry is not None
            and job.completed_at is not None
            and utc_now() - job.completed_at >= timedelta(seconds=expiry)
        )

    def output_response(self, request: Request, job: J, name: str) -> FileResponse | None:
        """A streaming response with the job's output `name`; None if it has none (any more).

        The response also answers HEAD and Range requests, as CDNs do; a GET counts as a
        download in the provider's stats.
        """
        if name not in {output.name for output in job.outputs} or self.expired(job):
            return None
        path = self._output_path(job, name)
        if not path.is_file():
            return None
        if request.method == "GET":
            self.stats.output_downloads += 1
        return FileResponse(path, media_type=_OUTPUT_MEDIA_TYPE)

    # --- What providers implement ----------------------------------------------------------------

    @abstractmethod
    def _video_spec(self, job: J) -> VideoSpec:
        """The videos the job's input asks for."""

    def _output_names(self, job: J) -> Sequence[str]:
        """File names of the job's videos; one `output.mp4` unless overridden."""
        return ("output.mp4",)

    def _withheld(self, job: J, behaviour: ProviderBehaviour) -> bool:
        """Whether a safety filter withholds this job's videos (it then succeeds without any)."""
        return False

    def _notify(self, job: J, event: JobEvent) -> None:  # noqa: B027 (optional hook)
        """React to a job event, e.g. by sending a webhook; nothing unless overridden."""

    # --- Shared machinery ------------------------------------------------------------------------

    def _send_webhook(self, job: J, body: bytes, sign: Signer, *, final: bool) -> None:
        """Send a webhook about `job` to its webhook URL, after its earlier ones."""
        if job.webhook is None:
            return
        delivery = WebhookDelivery(
            provider=self.provider, url=job.webhook, body=body, sign=sign, final=final
        )
        self._state.webhooks.send(job.id, delivery, config=self._state.config, stats=self.stats)

    async def _run(self, job: J) -> None:
        """Move a job through queued → running → a terminal phase."""
        total = generation_seconds(self.behaviour)
        try:
            await asyncio.sleep(total * _QUEUED_SHARE)
            job.phase = Phase.RUNNING
            job.started_at = utc_now()
            spec = self._video_spec(job)
            seed = random.randrange(2**31) if spec.seed is None else spec.seed
            self._log(job, f"Using seed: {seed}")
            for step in range(_PROGRESS_STEPS):
                self._log(job, f"Generating video... {100 * step // _PROGRESS_STEPS}%")
                await asyncio.sleep(total * (1 - _QUEUED_SHARE) / _PROGRESS_STEPS)
            self._log(job, "Generating video... 100%")

            # Read the config again: a PATCH while the job ran applies to its outcome.
            behaviour = self.behaviour
            if chance(behaviour.failure_rate):
                self._finish(job, Phase.FAILED, error=behaviour.failure_message)
                return
            if self._withheld(job, behaviour):
                self._finish(job, Phase.SUCCEEDED)
                return
            names = self._output_names(job)
            outputs = [await self._render(job, spec, seed, name) for name in names]
            self._finish(job, Phase.SUCCEEDED, outputs=outputs)
        except Exception as error:
            # A bug or a full disk must end the job like a real crash, not leave it running.
            logger.exception("%s job %s crashed", self.provider, job.id)
            job.crashed = True
            self._finish(job, Phase.FAILED, error=f"{type(error).__name__}: {error}")

    async def _render(self, job: J, spec: VideoSpec, seed: int, name: str) -> OutputFile:
        path = self._output_path(job, name)
        width, height = frame_size(spec.aspect_ratio)
        await asyncio.to_thread(
            render_mp4,
            path,
            prompt=spec.prompt,
            seconds=spec.seconds,
            width=width,
            height=height,
            fps=spec.fps,
            seed=seed,
        )
        size = path.stat().st_size
        self._log(job, f"Video saved ({size} bytes)")
        return OutputFile(name=name, size=size)

    def _output_path(self, job: J, name: str) -> Path:
        return self._state.outputs.path(provider=self.provider, job_id=job.id, filename=name)

    def _log(self, job: J, message: str) -> None:
        job.logs.append(LogLine(message=message, at=utc_now()))
        self._notify(job, JobEvent.LOG)

    def _finish(
        self,
        job: J,
        phase: Phase,
        *,
        error: str | None = None,
        outputs: Sequence[OutputFile] = (),
    ) -> None:
        job.phase = phase
        job.error = error
        job.outputs = list(outputs)
        job.completed_at = utc_now()
        logger.info("%s job %s %s", self.provider, job.id, phase.value)
        self._notify(job, JobEvent.FINISHED)
        # Nothing later will come for this job to overtake what reordering held back.
        self._state.webhooks.release(job.id)


B = TypeVar("B", bound=JobBackend[Any])


def backend_dependency(cls: type[B]) -> Callable[[Request], B]:
    """A FastAPI dependency giving the app's backend of class `cls`."""

    def get_backend(request: Request) -> B:
        backend = get_state(request).backends[cls.provider]
        assert isinstance(backend, cls)
        return backend

    return get_backend
