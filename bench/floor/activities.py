"""The floor's activities: they keep time and nothing else (except an optional plain copy)."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from bench.floor.types import (
    FloorEvent,
    FloorStart,
    FloorStarted,
    PersistInput,
    PollInput,
    PollResult,
)

__all__ = ["FloorActivities", "Notify"]

Notify = Callable[[str, FloorEvent], Awaitable[None]]
"""Sends the provider's "webhook" signal to a workflow (given its id)."""

_COPY_CHUNK = 1024 * 1024


class FloorActivities:
    """Activities of the floor workflow; `notify` plays the provider's webhook."""

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self._pending: set[asyncio.Task[None]] = set()
        self._rng = random.Random()

    @activity.defn(name="floor_start")
    async def start(self, start: FloorStart) -> FloorStarted:
        """Create the "provider job"; when it finishes, signal the workflow (if webhook)."""
        finishes_at = time.time() + start.provider_seconds
        if start.webhook:
            task = asyncio.create_task(self._signal_later(start))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return FloorStarted(finishes_at)

    async def _signal_later(self, start: FloorStart) -> None:
        await asyncio.sleep(start.provider_seconds)
        await self._notify(start.workflow_id, FloorEvent(start.branch, time.time()))

    @activity.defn(name="floor_poll")
    async def poll(self, poll: PollInput) -> PollResult:
        """One poll: fails (and is retried on the schedule) until the provider has finished;
        attempt 1 only arms the schedule."""
        attempt = activity.info().attempt
        if attempt == 1 or time.time() < poll.finishes_at:
            gap = poll.schedule.jittered_gap_after(attempt - 1, self._rng)
            raise ApplicationError(
                "still running", type="JobStillRunning", next_retry_delay=timedelta(seconds=gap)
            )
        scheduled = activity.info().current_attempt_scheduled_time
        return PollResult(finished_at=poll.finishes_at, scheduled_at=scheduled.timestamp())

    @activity.defn(name="floor_persist")
    async def persist(self, persist: PersistInput) -> None:
        """Nothing, or a plain streaming copy of `copy_url` into `copy_dir` (fsynced)."""
        if persist.copy_url is None or persist.copy_dir is None:
            return
        destination = Path(persist.copy_dir) / f"floor-{uuid.uuid4().hex}.bin"
        await asyncio.to_thread(_copy, persist.copy_url, destination)

    @activity.defn(name="floor_record")
    async def record(self, branch: int) -> float:
        """The job's last step: returns the wall-clock time it finished."""
        return time.time()


def _copy(url: str, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with (
        httpx.Client(timeout=60) as client,
        client.stream("GET", url) as response,
        destination.open("wb") as file,
    ):
        response.raise_for_status()
        for chunk in response.iter_raw(_COPY_CHUNK):
            file.write(chunk)
        file.flush()
        os.fsync(file.fileno())
