"""What scenarios share: clients of the running stack, reelflow and floor helpers, load loops."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import httpx
from temporalio.client import Client

from bench.floor.types import FloorInput, FloorResult
from bench.floor.workflows import FloorWorkflow
from bench.procs import CpuMeter
from bench.results import Figure
from bench.stack import BenchStack
from reelflow.stack import EMULATOR_CREDENTIALS
from reelflow.temporal import execution_workflow_id

__all__ = [
    "SEEDANCE",
    "Bench",
    "Done",
    "Saturation",
    "closed_loop",
    "parse_time",
    "saturate",
    "seedance_job",
]

SEEDANCE = "bytedance/seedance-1-lite"
"""The model every benchmark job uses (Replicate: webhooks and polling)."""

T = TypeVar("T")


def parse_time(text: str) -> float:
    """Unix seconds of an ISO 8601 timestamp (`Z` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def seedance_job(job_id: str, *, polling: bool = False) -> dict[str, Any]:
    """A 2-second Seedance clip job (the shortest the model takes: the emulator renders it)."""
    params: dict[str, Any] = {
        "modelId": SEEDANCE,
        "prompt": f"benchmark clip {job_id}",
        "durationSeconds": 2,
        "resolution": "480p",
    }
    if polling:
        params["waitingStrategy"] = "polling"
    return {"id": job_id, "operation": "pipeline:generate", "params": params}


@dataclass(frozen=True)
class Done:
    """An execution that ended, as `GET /api/status` shows it."""

    execution_id: str
    """Its id."""
    status: dict[str, Any]
    """The status body."""

    @property
    def completed(self) -> bool:
        """Whether it and all its jobs completed."""
        return self.status["status"] == "completed" and all(
            job["status"] == "completed" for job in self.status["jobs"]
        )


@dataclass
class Bench:
    """One run's clients of the stack, and what the scenarios report."""

    stack: BenchStack
    quick: bool
    api: httpx.AsyncClient
    emulator: httpx.AsyncClient
    temporal: Client
    db: asyncpg.Pool
    figures: list[Figure] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def figure(self, figure: Figure) -> None:
        """Report a figure."""
        self.figures.append(figure)

    @asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        """Time a phase of a scenario (kept in the JSON's extras, for finding slow phases)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.extras.setdefault("phase_seconds", {})[name] = round(time.monotonic() - started, 2)

    def cpu_meter(self, *names: str) -> CpuMeter:
        """A CPU meter over these components (postgres counts its backends)."""
        pids = {name: self.stack.pids[name] for name in names if name in self.stack.pids}
        return CpuMeter(pids, trees=frozenset({"postgres"}))

    # --- The emulator -----------------------------------------------------------------------------

    async def configure_emulator(self, changes: dict[str, Any]) -> None:
        """`PATCH /_emulator/config`."""
        response = await self.emulator.patch("/_emulator/config", json=changes)
        response.raise_for_status()

    async def prediction(self, prediction_id: str) -> dict[str, Any]:
        """A Replicate prediction as the emulator shows it."""
        response = await self.emulator.get(
            f"/replicate/v1/predictions/{prediction_id}",
            headers={"Authorization": f"Bearer {EMULATOR_CREDENTIALS['REPLICATE_API_TOKEN']}"},
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def provider_finished_at(self, prediction_id: str) -> float:
        """When the emulator finished a prediction: set just before it queues the webhook."""
        return parse_time((await self.prediction(prediction_id))["completed_at"])

    # --- reelflow ---------------------------------------------------------------------------------

    async def submit(self, jobs: list[dict[str, Any]]) -> str:
        """`POST /api/execute`; the execution id."""
        response = await self.api.post(
            "/api/execute",
            json={"executionPlan": {"jobs": jobs}},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
        execution_id: str = response.json()["executionId"]
        return execution_id

    async def wait_execution(self, execution_id: str, timeout_s: float = 600) -> None:
        """Wait until the execution's workflow has closed (a long poll on Temporal, which puts
        no load on the API)."""
        handle = self.temporal.get_workflow_handle(execution_workflow_id(execution_id))
        await asyncio.wait_for(handle.result(), timeout=timeout_s)

    async def status(self, execution_id: str) -> dict[str, Any]:
        """`GET /api/status/{id}`."""
        response = await self.api.get(f"/api/status/{execution_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def run_execution(self, jobs: list[dict[str, Any]], timeout_s: float = 600) -> str:
        """Submit and wait until the workflow has closed; the execution id."""
        execution_id = await self.submit(jobs)
        await self.wait_execution(execution_id, timeout_s)
        return execution_id

    async def done(self, execution_id: str) -> Done:
        """The ended execution's status."""
        return Done(execution_id, await self.status(execution_id))

    # --- The floor --------------------------------------------------------------------------------

    async def run_floor(self, floor: FloorInput, timeout_s: float = 600) -> FloorResult:
        """Run one floor workflow to its end."""
        return await asyncio.wait_for(
            self.temporal.execute_workflow(
                FloorWorkflow.run,
                floor,
                id=f"floor-{uuid.uuid4().hex}",
                task_queue=self.stack.floor_queue,
            ),
            timeout=timeout_s,
        )


async def closed_loop(count: int, concurrency: int, one: Callable[[int], Awaitable[T]]) -> list[T]:
    """Run `one(i)` for i in 0..count-1, keeping `concurrency` in flight."""
    results: list[T] = []
    counter = itertools.count()

    async def lane() -> None:
        while (index := next(counter)) < count:
            results.append(await one(index))

    await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))
    return results


@dataclass(frozen=True)
class Saturation:
    """What a saturated window measured."""

    rate: float
    """Calls completed per second within the window."""
    completed: int
    """Calls completed within the window."""


async def saturate(
    one: Callable[[], Awaitable[Any]],
    *,
    in_flight: int,
    window_s: float,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_end: Callable[[], Awaitable[None]] | None = None,
    warm_s: float | None = None,
    fill_timeout_s: float = 300,
) -> Saturation:
    """Keep `in_flight` calls of `one()` going; once as many calls have completed as are in
    flight (the pipeline is full) or, with `warm_s`, after that long, count completions over
    `window_s`; then stop starting calls and wait for those under way. `on_start` and `on_end`
    run at the window's edges."""
    finished: list[float] = []
    filled = asyncio.Event()
    stopping = False

    async def lane() -> None:
        while not stopping:
            await one()
            finished.append(time.monotonic())
            if len(finished) >= in_flight:
                filled.set()

    lanes = [asyncio.create_task(lane()) for _ in range(in_flight)]
    try:
        if warm_s is None:
            await asyncio.wait_for(filled.wait(), timeout=fill_timeout_s)
        else:
            await asyncio.sleep(warm_s)
        started = time.monotonic()
        if on_start is not None:
            await on_start()
        await asyncio.sleep(window_s)
        ended = time.monotonic()
        if on_end is not None:
            await on_end()
        stopping = True
        await asyncio.gather(*lanes)
    finally:
        for task in lanes:
            task.cancel()
    completed = sum(1 for t in finished if started <= t < ended)
    return Saturation(completed / (ended - started), completed)
