"""Scenario 5: a big output (300 MB; 50 MB with `--quick`).

The emulator's output URL is pointed at the payload file server (`bench.fileserver`), which
sends a real MP4 of that size with sendfile. reelflow's figure is the time from the provider
finishing to the job being `completed` with the output stored; the baseline is a plain streaming
copy on the same machine from the same server into the same store (`curl | dd conv=fsync`: the
`curl | aws s3 cp` of a local directory store, durable on return like reelflow's). The worker's
peak memory growth is its VmHWM over its RSS before the job (the peak is reset first).

Floor: a bare workflow whose persist activity does the plain copy (Python, 1 MB chunks, fsync).
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import time

from bench.floor.types import FloorInput
from bench.harness import Bench, parse_time, seedance_job
from bench.payloads import ensure_payload, payload_name
from bench.procs import peak_rss_bytes, reset_peak_rss, rss_bytes
from bench.results import Figure, Target

__all__ = ["NAME", "run"]

NAME = "5 big output"

_PROVIDER_SECONDS = 0.3
_MB = 1e6


async def _plain_copy(url: str, destination: str) -> float:
    command = (
        f"curl -sS --fail -o - {shlex.quote(url)}"
        f" | dd of={shlex.quote(destination)} bs=1M conv=fsync status=none"
    )
    started = time.monotonic()
    process = await asyncio.create_subprocess_shell(command)
    if await process.wait() != 0:
        raise RuntimeError(f"the plain copy failed: {command}")
    return time.monotonic() - started


async def run(bench: Bench) -> None:
    """Re-host a big output; compare with a plain copy; watch the worker's memory."""
    size = 50_000_000 if bench.quick else 300_000_000
    payload = await asyncio.to_thread(ensure_payload, size)
    name = payload_name(size)
    url = f"{bench.stack.files_url}/{name}/replicate/delivery/baseline/output.mp4"
    store = bench.stack.cluster.files_dir
    copies = store / "bench-copies"
    copies.mkdir(parents=True, exist_ok=True)

    baseline = await _plain_copy(url, str(copies / "curl.mp4"))

    await bench.configure_emulator(
        {
            "public_url": f"{bench.stack.files_url}/{name}",
            "replicate": {"generation_seconds": _PROVIDER_SECONDS},
        }
    )
    worker = bench.stack.pids["worker"]
    try:
        peak_reset = reset_peak_rss(worker)
        before = rss_bytes(worker)
        execution_id = await bench.run_execution([seedance_job("big")])
        growth = peak_rss_bytes(worker) - before if peak_reset else float("nan")
    finally:
        await bench.configure_emulator(
            {"public_url": bench.stack.emulator_url, "replicate": {"generation_seconds": 0}}
        )
    done = await bench.done(execution_id)
    job = done.status["jobs"][0]
    if not done.completed or job["outputs"][0]["bytes"] != payload.stat().st_size:
        raise RuntimeError(f"the big output was not stored: {job['status']} {job['error']}")
    finished = await bench.provider_finished_at(job["providerJobId"])
    rehost = parse_time(job["completedAt"]) - finished

    floor_pid = bench.stack.pids["floor"]
    floor_reset = reset_peak_rss(floor_pid)
    floor_before = rss_bytes(floor_pid)
    result = await bench.run_floor(
        FloorInput(provider_seconds=_PROVIDER_SECONDS, copy_url=url, copy_dir=str(copies))
    )
    floor_growth = peak_rss_bytes(floor_pid) - floor_before if floor_reset else float("nan")
    branch = result.branches[0]
    shutil.rmtree(copies, ignore_errors=True)

    megabytes = payload.stat().st_size / _MB
    bench.figure(
        Figure(
            NAME,
            f"{megabytes:.0f} MB re-hosted: wall (floor = curl | dd)",
            "s",
            rehost,
            baseline,
            Target("ratio_at_most", 1.5),
        )
    )
    bench.figure(
        Figure(NAME, "  bare workflow + plain copy", "s", branch.done_at - branch.finished_at)
    )
    bench.figure(
        Figure(
            NAME,
            "worker peak RSS growth (floor = floor worker's)",
            "MB",
            growth / _MB,
            floor_growth / _MB,
            Target("at_most", 64),
        )
    )
