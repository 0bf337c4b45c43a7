"""A benchmark run: per run a fresh stack, a warm-up, the chosen scenarios; then the medians."""

from __future__ import annotations

import asyncio
import math
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console
from temporalio.client import Client

from bench.floor.types import FloorInput
from bench.harness import Bench, seedance_job
from bench.procs import machine_busy_seconds
from bench.profile import profiled
from bench.results import RESULTS_DIR, Figure, Report, machine, print_table, summarise, write_json
from bench.scenarios import SCENARIOS
from bench.stack import BenchStack, StackOptions

__all__ = ["Options", "run_bench"]

_QUICK_SAFETY_POLL_S = 10.0
_WARM_UP = 3


@dataclass(frozen=True)
class Options:
    """What to run."""

    scenarios: tuple[str, ...]
    """Command-line names of the scenarios, in running order."""
    runs: int = 3
    """Runs, each on a fresh stack; figures are their medians."""
    quick: bool = False
    """A reduced version of everything, to check the harness."""
    keep_state: bool = False
    """Keep each run's state directory (logs, database, files)."""
    output: Path | None = None
    """Where the JSON goes (default bench/results/<timestamp>.json)."""
    profile: bool = False
    """Record the worker and the API with py-spy during each scenario (bench/results/profiles-…)."""


async def _warm_up(bench: Bench) -> None:
    """A few executions and floor workflows: connections, pools and caches are warm."""
    for _ in range(_WARM_UP):
        await bench.run_execution([seedance_job("warm-up")], timeout_s=120)
        await bench.run_floor(FloorInput(), timeout_s=60)


async def _run_once(
    index: int, options: Options, console: Console, profiles: Path
) -> tuple[list[Figure], dict[str, Any], list[str]]:
    stack = BenchStack(
        StackOptions(
            webhook_safety_poll_s=_QUICK_SAFETY_POLL_S if options.quick else None,
            keep_state=options.keep_state,
        )
    )
    errors: list[str] = []
    figures: list[Figure] = []
    extras: dict[str, Any] = {}
    began = time.monotonic()
    try:
        await stack.start()
        console.print(
            f"run {index}: stack up in {time.monotonic() - began:.0f} s (state {stack.state_dir})"
        )
        async with (
            httpx.AsyncClient(
                base_url=stack.api_url,
                headers={"Authorization": f"Bearer {stack.api_key}"},
                timeout=120,
                # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes
                # them: reusing one the server is closing fails with a ReadError.
                limits=httpx.Limits(
                    max_connections=256, max_keepalive_connections=256, keepalive_expiry=2.0
                ),
            ) as api,
            httpx.AsyncClient(base_url=stack.emulator_url, timeout=30) as emulator,
            asyncpg.create_pool(stack.dsn, min_size=1, max_size=2) as db,
        ):
            temporal = await Client.connect(stack.temporal_address)
            bench = Bench(
                stack=stack,
                quick=options.quick,
                api=api,
                emulator=emulator,
                temporal=temporal,
                db=db,
            )
            async with bench.phase("warm-up"):
                await _warm_up(bench)
            # Other processes on the machine (other people's test runs) skew every figure:
            # their CPU use over the run is reported beside the figures.
            meter = bench.cpu_meter(*stack.pids)
            meter.start()
            busy, wall = machine_busy_seconds(), time.monotonic()
            for name in options.scenarios:
                title, scenario = SCENARIOS[name]
                started = time.monotonic()
                console.print(f"run {index}: {title}…")
                try:
                    if options.profile:
                        targets = {name: stack.pids[name] for name in ("worker", "api")}
                        with profiled(targets, profiles, f"run{index}-{name}"):
                            await scenario(bench)
                    else:
                        await scenario(bench)
                except Exception as error:
                    console.print(f"[red]run {index}: {title} failed:[/] {error!r}")
                    errors.append(f"run {index} {title}: {traceback.format_exc()}")
                    bench.figure(Figure(title, "scenario failed", "", math.nan, note=repr(error)))
                console.print(f"run {index}: {title} took {time.monotonic() - started:.0f} s")
                dead = stack.crashed()
                if dead:
                    raise RuntimeError(f"components exited on their own: {', '.join(dead)}")
            ours = sum(meter.stop().values())
            elapsed = time.monotonic() - wall
            others = 100 * max(0.0, machine_busy_seconds() - busy - ours) / elapsed
            bench.figure(
                Figure(
                    "machine",
                    "CPU used by other processes during the run",
                    "% core",
                    others,
                    note="anything above a few % means the figures are skewed by other load",
                )
            )
            figures, extras = bench.figures, bench.extras
    except Exception:
        errors.append(f"run {index}: {traceback.format_exc()}")
        console.print_exception(show_locals=False)
    finally:
        await asyncio.to_thread(stack.stop, keep_state=bool(errors))
        if options.keep_state or errors:
            console.print(f"run {index}: state kept in {stack.state_dir}")
    return figures, extras, errors


async def run_bench(options: Options, console: Console) -> int:
    """Run, print the table, write the JSON; 0 unless the harness itself failed."""
    started_at = datetime.now(UTC).isoformat()
    began = time.monotonic()
    profiles = RESULTS_DIR / f"profiles-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    runs: list[list[Figure]] = []
    extras: list[dict[str, Any]] = []
    errors: list[str] = []
    for index in range(1, options.runs + 1):
        figures, extra, run_errors = await _run_once(index, options, console, profiles)
        runs.append(figures)
        extras.append(extra)
        errors.extend(run_errors)
    summaries = summarise(runs)
    host = machine()
    mode = "quick" if options.quick else "full"
    title = (
        f"reelflow bench ({mode}, median of {options.runs} run(s), "
        f"{host['cores']} cores, {host['cpu']})"
    )
    notes = [
        "floor: a bare Temporal workflow with the same activities and signals, no DB, storage or"
        " HTTP, on the same server and its own worker process (see bench/floor/).",
        "ratio = reelflow / floor; big output's floor column is the plain copy (curl | dd).",
    ]
    for summary in summaries:
        if summary.note:
            notes.append(f"{summary.scenario} / {summary.name}: {summary.note}")
    print_table(summaries, console=console, title=title, notes=notes)
    report = Report(
        started_at=started_at,
        options={**asdict(options), "output": str(options.output) if options.output else None},
        machine=host,
        summaries=summaries,
        runs=runs,
        extras=extras,
        errors=errors,
    )
    path = write_json(report, options.output)
    console.print(f"results: {path} (took {(time.monotonic() - began) / 60:.1f} min)")
    if options.profile:
        console.print(f"profiles: {profiles}")
    if errors:
        console.print(f"[red]{len(errors)} error(s)[/]; see the JSON file")
    return 1 if errors else 0
