"""Scenario 6: status reads.

`GET /api/status` of a completed 50-job execution (every job with its output), by 50 concurrent
readers: back to back (each reader asks again as soon as it has its answer: 50 requests always
in flight), and paced (each reader twice a second, as a status page polling). Latency is measured
by the reader, over keep-alive connections.

Floor: the engine's own read path: 50 readers querying (Temporal query) a bare workflow that
holds 50 jobs' timings, the same ways.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from bench.floor.types import FloorInput
from bench.floor.workflows import FloorWorkflow
from bench.harness import Bench, closed_loop, seedance_job
from bench.results import Figure, Target, percentile

__all__ = ["NAME", "run"]

NAME = "6 status reads"

_JOBS = 50
_READERS = 50
_PACED_GAP_S = 0.5


async def _timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def _paced(call: Callable[[], Awaitable[object]], seconds: float) -> list[float]:
    latencies: list[float] = []

    async def reader(offset: float) -> None:
        await asyncio.sleep(offset)
        stop_at = time.monotonic() + seconds
        while time.monotonic() < stop_at:
            began = time.monotonic()
            latencies.append(await _timed(call))
            await asyncio.sleep(max(0.0, _PACED_GAP_S - (time.monotonic() - began)))

    await asyncio.gather(*(reader(_PACED_GAP_S * index / _READERS) for index in range(_READERS)))
    return latencies


async def run(bench: Bench) -> None:
    """Back-to-back and paced readers of one big status, and of the floor's query."""
    requests, paced_s = (300, 4.0) if bench.quick else (800, 6.0)
    # The floor's workflow is built at the same time; it stays open until released.
    handle = await bench.temporal.start_workflow(
        FloorWorkflow.run,
        FloorInput(branches=_JOBS, provider_seconds=0.3, hold=True),
        id=f"floor-status-{uuid.uuid4().hex}",
        task_queue=bench.stack.floor_queue,
    )
    await bench.configure_emulator({"replicate": {"generation_seconds": 0.3}})
    try:
        execution_id = await bench.run_execution(
            [seedance_job(f"clip{index}") for index in range(_JOBS)]
        )
    finally:
        await bench.configure_emulator({"replicate": {"generation_seconds": 0}})
    done = await bench.done(execution_id)
    if not done.completed:
        raise RuntimeError(f"the {_JOBS}-job execution ended {done.status['status']}")
    path = f"/api/status/{execution_id}"
    size = len((await bench.api.get(path)).content)

    async def read() -> None:
        response = await bench.api.get(path)
        response.raise_for_status()

    meter = bench.cpu_meter("api", "postgres", "bench")
    meter.start()
    started = time.monotonic()
    back_to_back = await closed_loop(requests, _READERS, lambda _: _timed(read))
    elapsed = time.monotonic() - started
    cpu = meter.stop()
    paced = await _paced(read, paced_s)

    while len(await handle.query(FloorWorkflow.state)) < _JOBS:
        await asyncio.sleep(0.2)

    async def query() -> None:
        await handle.query(FloorWorkflow.state)

    floor_started = time.monotonic()
    floor_back = await closed_loop(requests, _READERS, lambda _: _timed(query))
    floor_elapsed = time.monotonic() - floor_started
    floor_paced = await _paced(query, paced_s)
    await handle.signal(FloorWorkflow.release)
    await handle.result()

    for label, fraction, target in (("p50", 0.5, None), ("p99", 0.99, Target("at_most", 30))):
        bench.figure(
            Figure(
                NAME,
                f"{label}, {_READERS} readers back to back",
                "ms",
                percentile(back_to_back, fraction),
                percentile(floor_back, fraction),
                target,
            )
        )
    bench.figure(
        Figure(NAME, "  reads/s back to back", "/s", requests / elapsed, requests / floor_elapsed)
    )
    bench.figure(Figure(NAME, "  API CPU per read", "ms", cpu["api"] * 1000 / requests))
    bench.figure(
        Figure(
            NAME,
            "  PostgreSQL CPU per read",
            "ms",
            cpu.get("postgres", float("nan")) * 1000 / requests,
        )
    )
    bench.figure(
        Figure(NAME, "  load generator CPU per read", "ms", cpu["bench"] * 1000 / requests)
    )
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        bench.figure(
            Figure(
                NAME,
                f"{label}, {_READERS} readers at {1 / _PACED_GAP_S:g} reads/s each",
                "ms",
                percentile(paced, fraction),
                percentile(floor_paced, fraction),
                Target("at_most", 30) if label == "p99" else None,
            )
        )
    bench.figure(Figure(NAME, "  status body size", "KB", size / 1e3))
