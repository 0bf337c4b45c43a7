"""Scenario 2: polling lag.

Polling-only jobs (Seedance with `waitingStrategy: polling`; the emulator drops every Replicate
webhook meanwhile, so only polls can see the end) on reelflow's default schedule: first poll
5 s after the start, then 7.5 s later, …, each gap cut by up to 10 % at random. The provider
takes 7 s ± 1.5 s, so each job ends between the first and the second poll. The lag of a job is
from the provider finishing to the job being `completed`; it should be the wait for the next
scheduled poll (the job's `nextPollAt` as the status showed it before the end) plus the
transfer. The target is on the excess: `completedAt - nextPollAt`.

Floor: the same schedule (jitter included) as a retried poll activity in a bare workflow, run at
the same time; its scheduled time is Temporal's `current_attempt_scheduled_time` of the
successful poll.
"""

from __future__ import annotations

import asyncio
import math

from bench.floor.types import FloorInput
from bench.harness import Bench, parse_time, seedance_job
from bench.results import Figure, Target, percentile
from reelflow.config import Settings
from reelflow.executions import poll_schedule
from reelflow.types import WaitingStrategy

__all__ = ["NAME", "run"]

NAME = "2 polling lag"

_PROVIDER_SECONDS = 7.0
_JITTER_SECONDS = 1.5
_SAMPLE_EVERY_S = 0.5


async def _watch(bench: Bench, execution_id: str) -> tuple[dict[str, object], float | None]:
    """Read the status until the job ends; the final job and the last `nextPollAt` seen."""
    next_poll: float | None = None
    while True:
        status = await bench.status(execution_id)
        job = status["jobs"][0]
        if job["nextPollAt"]:
            next_poll = parse_time(job["nextPollAt"])
        if status["status"] in ("completed", "failed", "canceled"):
            return job, next_poll
        await asyncio.sleep(_SAMPLE_EVERY_S)


async def run(bench: Bench) -> None:
    """Measure reelflow's polling lag and its floor's."""
    count = 4 if bench.quick else 10
    await bench.configure_emulator(
        {
            "replicate": {
                "generation_seconds": _PROVIDER_SECONDS,
                "generation_jitter_seconds": _JITTER_SECONDS,
                "webhook_drop_rate": 1.0,
            }
        }
    )
    floor_input = FloorInput(
        provider_seconds=_PROVIDER_SECONDS,
        provider_jitter_seconds=_JITTER_SECONDS,
        webhook=False,
        poll=poll_schedule(Settings.model_construct(), WaitingStrategy.POLLING),
    )

    async def reelflow() -> list[tuple[dict[str, object], float | None]]:
        ids = await asyncio.gather(
            *(bench.submit([seedance_job("clip", polling=True)]) for _ in range(count))
        )
        return list(await asyncio.gather(*(_watch(bench, execution_id) for execution_id in ids)))

    # Both sides at once: a few jobs each, mostly waiting; the schedule takes 13 s.
    try:
        watched, floors = await asyncio.gather(
            reelflow(), asyncio.gather(*(bench.run_floor(floor_input) for _ in range(count)))
        )
    finally:
        await bench.configure_emulator(
            {
                "replicate": {
                    "generation_seconds": 0,
                    "generation_jitter_seconds": 0,
                    "webhook_drop_rate": 0,
                }
            }
        )
    excess, lag, schedule = [], [], []
    for job, next_poll in watched:
        if job["status"] != "completed" or next_poll is None:
            excess.append(math.nan)
            continue
        completed = parse_time(str(job["completedAt"]))
        finished = await bench.provider_finished_at(str(job["providerJobId"]))
        excess.append((completed - next_poll) * 1000)
        lag.append(completed - finished)
        schedule.append(next_poll - finished)

    floor_excess, floor_lag = [], []
    for result in floors:
        for branch in result.branches:
            assert branch.scheduled_poll_at is not None
            floor_excess.append((branch.done_at - branch.scheduled_poll_at) * 1000)
            floor_lag.append(branch.done_at - branch.finished_at)

    measured = [value for value in excess if not math.isnan(value)]
    missing = len(excess) - len(measured)
    bench.figure(
        Figure(
            NAME,
            "completed − scheduled poll, p50",
            "ms",
            percentile(measured, 0.5),
            percentile(floor_excess, 0.5),
            Target("at_most", 200),
        )
    )
    bench.figure(
        Figure(
            NAME,
            "completed − scheduled poll, max",
            "ms",
            max(measured) if measured and not missing else math.nan,
            max(floor_excess),
            Target("at_most", 200),
        )
    )
    bench.figure(
        Figure(
            NAME,
            "lag: provider done → completed, p50",
            "s",
            percentile(lag, 0.5),
            percentile(floor_lag, 0.5),
        )
    )
    bench.figure(
        Figure(NAME, "  of which waiting for the poll, p50", "s", percentile(schedule, 0.5))
    )
    if missing:
        bench.figure(Figure(NAME, "jobs not measured (failed / no nextPollAt)", "", missing))
