"""Scenario 4: the cost of waiting.

Many jobs wait on webhooks at once (1,000; 100 with `--quick`), as plans of 20 jobs (1,000
single-job plans take minutes to submit on a loaded 2-core machine; a single-job plan adds one
ExecutionWorkflow per job), whose provider takes an hour, so nothing arrives but the safety-net
polls (`WEBHOOK_SAFETY_POLL_S`, 300 s by default; 10 s with `--quick`). Once every job has its
provider job, one safety interval is measured: every job polls once in it (each poll is a retry
of the poll activity the job started with: no timer and no workflow task). Reported: the
worker's and the API's resident memory (highest of 1 s samples), their CPU as a share of one
core, and provider calls per minute, counted from the polls reelflow records (`poll_attempts`).

Floor: as many bare workflows' jobs (20 branches each) waiting on a signal with the same
safety-net schedule, at the same time, on the floor's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from bench.floor.types import FloorInput
from bench.floor.workflows import FloorWorkflow
from bench.harness import Bench, seedance_job
from bench.procs import rss_bytes
from bench.results import Figure, Target
from reelflow.config import Settings
from reelflow.executions import poll_schedule
from reelflow.types import WaitingStrategy

__all__ = ["NAME", "run"]

NAME = "4 waiting cost"

_PROVIDER_SECONDS = 3600.0
_JOBS_PER_PLAN = 20
_SUBMITTERS = 4
_MB = 1e6
_DEFAULT_SAFETY_POLL_S: float = Settings.model_fields["webhook_safety_poll_s"].default


async def _ready(bench: Bench, count: int, timeout_s: float) -> None:
    """Wait until `count` jobs have their provider job (every start activity has run)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        started = await bench.db.fetchval(
            "SELECT count(*) FROM execution_jobs WHERE provider_job_id IS NOT NULL"
            " AND status NOT IN ('completed', 'failed', 'canceled')"
        )
        if started >= count:
            return
        await asyncio.sleep(1)
    raise TimeoutError(f"only {started} of {count} jobs started within {timeout_s} s")


async def _polls(bench: Bench) -> int:
    return int(
        await bench.db.fetchval("SELECT coalesce(sum(poll_attempts), 0) FROM execution_jobs")
    )


async def run(bench: Bench) -> None:
    """Measure memory, idle CPU and safety-net calls with many jobs waiting."""
    count = 100 if bench.quick else 1000
    safety_s = bench.stack.options.webhook_safety_poll_s or _DEFAULT_SAFETY_POLL_S
    pids = bench.stack.pids
    baseline = {name: rss_bytes(pids[name]) for name in ("worker", "api", "floor")}
    await bench.configure_emulator({"replicate": {"generation_seconds": _PROVIDER_SECONDS}})
    plans = count // _JOBS_PER_PLAN
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(plans):
        queue.put_nowait(index)

    async def submitter() -> None:
        while not queue.empty():
            queue.get_nowait()
            await bench.submit([seedance_job(f"clip{i}") for i in range(_JOBS_PER_PLAN)])

    async def floor_starter() -> None:
        for _ in range(plans):
            await bench.temporal.start_workflow(
                FloorWorkflow.run,
                FloorInput(
                    branches=_JOBS_PER_PLAN,
                    provider_seconds=_PROVIDER_SECONDS,
                    webhook=False,
                    poll=poll_schedule(
                        Settings.model_construct(webhook_safety_poll_s=safety_s),
                        WaitingStrategy.WEBHOOK,
                    ),
                ),
                id=f"floor-wait-{uuid.uuid4().hex}",
                task_queue=bench.stack.floor_queue,
            )

    await asyncio.gather(floor_starter(), *(submitter() for _ in range(_SUBMITTERS)))
    await _ready(bench, count, timeout_s=300)
    await asyncio.sleep(2)

    peak = dict(baseline)

    async def sample_memory() -> None:
        while True:
            for name in peak:
                with contextlib.suppress(OSError):
                    peak[name] = max(peak[name], rss_bytes(pids[name]))
            await asyncio.sleep(1)

    sampler = asyncio.create_task(sample_memory())
    try:
        meter = bench.cpu_meter("worker", "api", "floor", "temporal", "postgres")
        polls_before = await _polls(bench)
        meter.start()
        await asyncio.sleep(safety_s)
        cpu = meter.stop()
        polls = await _polls(bench) - polls_before
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler

    def share(cpu: dict[str, float], name: str) -> float:
        return 100 * cpu.get(name, float("nan")) / safety_s

    bench.figure(
        Figure(
            NAME,
            f"worker RSS, {count} jobs waiting",
            "MB",
            peak["worker"] / _MB,
            peak["floor"] / _MB,
            Target("at_most", 400),
        )
    )
    bench.figure(
        Figure(
            NAME,
            "  worker RSS growth per waiting job",
            "KB",
            (peak["worker"] - baseline["worker"]) / count / 1e3,
            (peak["floor"] - baseline["floor"]) / count / 1e3,
        )
    )
    bench.figure(Figure(NAME, "API RSS", "MB", peak["api"] / _MB))
    bench.figure(
        Figure(
            NAME,
            "idle CPU, worker + API",
            "% core",
            share(cpu, "worker") + share(cpu, "api"),
            share(cpu, "floor"),
            Target("at_most", 5),
        )
    )
    bench.figure(Figure(NAME, "  worker", "% core", share(cpu, "worker"), share(cpu, "floor")))
    bench.figure(Figure(NAME, "  API", "% core", share(cpu, "api")))
    bench.figure(Figure(NAME, "  Temporal server (both sides)", "% core", share(cpu, "temporal")))
    bench.figure(Figure(NAME, "  PostgreSQL", "% core", share(cpu, "postgres")))
    bench.figure(
        Figure(
            NAME,
            f"safety-net provider calls/min (every {safety_s:g} s)",
            "/min",
            polls * 60 / safety_s,
            count * 60 / safety_s,
        )
    )
