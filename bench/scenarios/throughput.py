"""Scenario 3: throughput at saturation, and what one plan costs.

Closed loops keep a fixed number of executions in flight (32 single-job plans, 16 with
`--quick`; or 2 plans of 20 jobs), each submitted through the API and waited for by a long poll
on its workflow. Single-job plans completed per second are counted over a window that opens once
the pipeline is full; fan-outs complete too rarely for that, so their rate is the jobs completed
within the window (each job's `completedAt`; the floor's record-activity end) divided by 20.
The provider takes no time (the emulator at zero generation time; it still renders each clip).

While the single-job window runs, CPU time of every process is read from /proc, and PostgreSQL's
transaction and row counters from `pg_stat_database`: per plan, they are the measured costs of
the capacity model. History events are counted on one execution (its workflow and its job's).

Floor: bare workflows of the same shape (5 activities and 1 signal per single-job plan; 2 + 20 × 3
activities and 20 signals per fan-out), in the same closed loops.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.floor.types import FloorInput
from bench.floor.workflows import FloorWorkflow
from bench.harness import Bench, saturate, seedance_job
from bench.results import Figure, Target
from reelflow.temporal import execution_workflow_id, job_workflow_id

__all__ = ["NAME", "run"]

NAME = "3 throughput"

_FANOUT_IN_FLIGHT = 2
_FANOUT_JOBS = 20
_COMPONENTS = ("worker", "api", "emulator", "temporal", "postgres", "floor", "bench")


async def _db_counters(bench: Bench) -> dict[str, int]:
    row = await bench.db.fetchrow(
        "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted"
        " FROM pg_stat_database WHERE datname = current_database()"
    )
    assert row is not None
    return {key: int(row[key]) for key in row.keys()}


async def _saturate(
    bench: Bench, one: Callable[[], Awaitable[Any]], in_flight: int, *, warm_s: float | None = None
) -> tuple[float, dict[str, float], dict[str, int], int, tuple[float, float]]:
    """Plans/s over the window, CPU seconds per component and DB counters within the window,
    the plans completed within it, and the window's wall-clock edges."""
    meter = bench.cpu_meter(*_COMPONENTS)
    before: dict[str, int] = {}
    measured: dict[str, Any] = {}

    async def start() -> None:
        measured["start"] = time.time()
        before.update(await _db_counters(bench))
        meter.start()

    async def end() -> None:
        measured["end"] = time.time()
        measured["cpu"] = meter.stop()
        # Statistics reach pg_stat_database within a second of each transaction.
        after = await _db_counters(bench)
        measured["db"] = {key: after[key] - before[key] for key in after}

    result = await saturate(
        one,
        in_flight=in_flight,
        window_s=10.0 if bench.quick else 15.0,
        on_start=start,
        on_end=end,
        warm_s=warm_s,
    )
    edges = (measured["start"], measured["end"])
    return result.rate, measured["cpu"], measured["db"], result.completed, edges


async def _history_events(bench: Bench, workflow_id: str) -> int:
    history = await bench.temporal.get_workflow_handle(workflow_id).fetch_history()
    return len(history.events)


async def run(bench: Bench) -> None:
    """Single-job plans and 20-job fan-outs per second, against the floor; per-plan costs."""
    ids: list[str] = []
    in_flight = 16 if bench.quick else 32

    async def single() -> None:
        ids.append(await bench.run_execution([seedance_job("clip")]))

    rate, cpu, db, plans, _ = await _saturate(bench, single, in_flight)
    floor_rate, floor_cpu, _, floor_plans, _ = await _saturate(
        bench, lambda: bench.run_floor(FloorInput()), in_flight
    )
    failed = await bench.db.fetchval(
        "SELECT count(*) FROM executions WHERE id = ANY($1::text[]) AND status <> 'completed'",
        ids,
    )
    bench.figure(
        Figure(
            NAME,
            f"single-job plans/s ({in_flight} in flight)",
            "/s",
            rate,
            floor_rate,
            Target("ratio_at_least", 0.5),
        )
    )
    if failed:
        bench.figure(Figure(NAME, "single-job plans not completed", "", failed))

    async def fanout() -> None:
        await bench.run_execution([seedance_job(f"clip{i}") for i in range(_FANOUT_JOBS)])

    warm = 5.0
    *_, (start, end) = await _saturate(bench, fanout, _FANOUT_IN_FLIGHT, warm_s=warm)
    jobs = await bench.db.fetchval(
        "SELECT count(*) FROM execution_jobs WHERE status = 'completed'"
        " AND completed_at >= to_timestamp($1) AND completed_at < to_timestamp($2)",
        start,
        end,
    )
    fan_rate = jobs / _FANOUT_JOBS / (end - start)
    branches: list[float] = []

    async def floor_fanout() -> None:
        result = await bench.run_floor(FloorInput(branches=_FANOUT_JOBS))
        branches.extend(branch.done_at for branch in result.branches)

    *_, (start, end) = await _saturate(bench, floor_fanout, _FANOUT_IN_FLIGHT, warm_s=warm)
    floor_jobs = sum(1 for done_at in branches if start <= done_at < end)
    floor_fan_rate = floor_jobs / _FANOUT_JOBS / (end - start)
    bench.figure(
        Figure(
            NAME,
            f"{_FANOUT_JOBS}-job fan-out plans/s ({_FANOUT_IN_FLIGHT} in flight)",
            "/s",
            fan_rate,
            floor_fan_rate,
        )
    )

    # Costs per single-job plan, within the saturated window.
    def per_plan(total: float, count: int) -> float:
        return total / count if count else math.nan

    for component, label in (
        ("worker", "worker CPU per plan"),
        ("api", "API CPU per plan"),
        ("temporal", "Temporal server CPU per plan"),
        ("postgres", "PostgreSQL CPU per plan"),
        ("emulator", "emulator (provider) CPU per plan"),
        ("bench", "load generator CPU per plan"),
    ):
        floor_value = {"worker": "floor", "temporal": "temporal", "bench": "bench"}.get(component)
        bench.figure(
            Figure(
                NAME,
                label,
                "ms",
                per_plan(cpu.get(component, math.nan) * 1000, plans),
                per_plan(floor_cpu.get(floor_value, math.nan) * 1000, floor_plans)
                if floor_value
                else None,
            )
        )
    bench.figure(Figure(NAME, "DB transactions per plan", "", per_plan(db["xact_commit"], plans)))
    written = db["tup_inserted"] + db["tup_updated"] + db["tup_deleted"]
    bench.figure(Figure(NAME, "DB rows written per plan", "", per_plan(written, plans)))
    sample = await bench.status(ids[-1])
    events = await _history_events(bench, execution_workflow_id(ids[-1])) + await _history_events(
        bench, job_workflow_id(sample["jobs"][0]["jobRecordId"])
    )
    floor_id = f"floor-{uuid.uuid4().hex}"
    await bench.temporal.execute_workflow(
        FloorWorkflow.run, FloorInput(), id=floor_id, task_queue=bench.stack.floor_queue
    )
    bench.figure(
        Figure(
            NAME,
            "history events per plan",
            "",
            events,
            await _history_events(bench, floor_id),
        )
    )
    bench.figure(
        Figure(NAME, "output bytes per plan", "KB", sample["jobs"][0]["outputs"][0]["bytes"] / 1e3)
    )
    bench.extras["throughput_cpu_seconds"] = {"reelflow": cpu, "floor": floor_cpu, "db": db}
