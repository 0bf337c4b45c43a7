"""FloorWorkflow: reelflow's workflow shape with activities that only keep time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from bench.floor.activities import FloorActivities
    from bench.floor.types import (
        BranchTiming,
        FloorEvent,
        FloorInput,
        FloorResult,
        FloorStart,
        PersistInput,
        PollInput,
    )
    from reelflow.temporal import poll_retry_policy

__all__ = ["FloorWorkflow"]

_ONCE = RetryPolicy(maximum_attempts=3)
_TIMEOUT = timedelta(seconds=60)


@workflow.defn
class FloorWorkflow:
    """Per branch: start → wait for the signal raced with polling → persist → record; the
    execution is recorded before and after, as ExecutionWorkflow and ProviderJobWorkflow do."""

    def __init__(self) -> None:
        self._events: dict[int, float] = {}
        self._done: dict[int, BranchTiming] = {}
        self._released = False

    @workflow.signal
    def provider_event(self, event: FloorEvent) -> None:
        """The provider finished a branch's job (keeps the first)."""
        self._events.setdefault(event.branch, event.sent_at)

    @workflow.signal
    def release(self) -> None:
        """Let a held workflow finish."""
        self._released = True

    @workflow.query
    def state(self) -> list[BranchTiming]:
        """The branches done so far."""
        return [self._done[branch] for branch in sorted(self._done)]

    @workflow.run
    async def run(self, floor: FloorInput) -> FloorResult:
        """Run every branch, then finish (after `release`, when held)."""
        if floor.wrap:
            await self._record(-1)
        await asyncio.gather(*(self._branch(floor, index) for index in range(floor.branches)))
        if floor.hold:
            await workflow.wait_condition(lambda: self._released)
        if floor.wrap:
            await self._record(-1)
        return FloorResult(self.state())

    async def _record(self, branch: int) -> float:
        return await workflow.execute_activity_method(
            FloorActivities.record, branch, start_to_close_timeout=_TIMEOUT, retry_policy=_ONCE
        )

    async def _branch(self, floor: FloorInput, index: int) -> None:
        provider_seconds = max(
            0.0,
            floor.provider_seconds
            + workflow.random().uniform(
                -floor.provider_jitter_seconds, floor.provider_jitter_seconds
            ),
        )
        started = await workflow.execute_activity_method(
            FloorActivities.start,
            FloorStart(workflow.info().workflow_id, index, provider_seconds, floor.webhook),
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_ONCE,
        )
        finished_at, scheduled = await self._wait(floor, index, started.finishes_at)
        await workflow.execute_activity_method(
            FloorActivities.persist,
            PersistInput(index, floor.copy_url, floor.copy_dir),
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=_ONCE,
        )
        done_at = await self._record(index)
        self._done[index] = BranchTiming(index, finished_at, scheduled, done_at)

    async def _wait(
        self, floor: FloorInput, index: int, finishes_at: float
    ) -> tuple[float, float | None]:
        """Signal raced with a poll activity retried on the schedule, as ProviderJobWorkflow:
        started with the job, its first attempt arming the schedule."""
        if index in self._events:
            return self._events[index], None
        poll = workflow.start_activity_method(
            FloorActivities.poll,
            PollInput(finishes_at, floor.poll),
            start_to_close_timeout=_TIMEOUT,
            retry_policy=poll_retry_policy(floor.poll),
        )
        signal = asyncio.ensure_future(workflow.wait_condition(lambda: index in self._events))
        try:
            await workflow.wait([poll, signal], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (poll, signal):
                if not pending.done():
                    pending.cancel()
        if index in self._events:
            return self._events[index], None
        polled = await poll
        return polled.finished_at, polled.scheduled_at
