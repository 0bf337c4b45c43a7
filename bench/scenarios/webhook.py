"""Scenario 1: webhook latency.

From the emulator finishing a job (its prediction's `completed_at`, set just before it queues
the completion webhook) to the job being `completed` with its 1 MB output stored (the job's
`completedAt` in `GET /api/status`, written in the same transaction that makes it visible),
at 1 and at 20 executions in flight. Each execution is one Seedance job whose provider takes a
fixed 0.5 s, so the webhook arrives after the start activity has returned.

Floor: a bare workflow with the same activities (record execution, start, persist, record job,
record execution) and the same signal, sent by the floor's start activity 0.5 s after it
returned; measured from sending the signal to the end of the record-job activity.
"""

from __future__ import annotations

from bench.floor.types import FloorInput
from bench.harness import Bench, closed_loop, parse_time, seedance_job
from bench.payloads import ensure_payload, payload_name
from bench.results import Figure, Target, percentile

__all__ = ["NAME", "run"]

NAME = "1 webhook latency"

_PROVIDER_SECONDS = 0.5
_OUTPUT_BYTES = 1_000_000


def _rounds(count: int, concurrency: int, rounds: int = 4) -> list[int]:
    """`count` split into up to `rounds` rounds of at least `2 × concurrency` each."""
    size = max(2 * concurrency, -(-count // rounds))
    split = []
    while count > 0:
        split.append(min(size, count))
        count -= split[-1]
    return split


async def run(bench: Bench) -> None:
    """Measure reelflow and its floor at 1 and 20 in flight."""
    payload = ensure_payload(_OUTPUT_BYTES)
    size = payload.stat().st_size
    await bench.configure_emulator(
        {
            "public_url": f"{bench.stack.files_url}/{payload_name(_OUTPUT_BYTES)}",
            "replicate": {"generation_seconds": _PROVIDER_SECONDS},
        }
    )
    counts = {1: 8, 20: 40} if bench.quick else {1: 24, 20: 60}
    try:
        for concurrency, count in counts.items():
            ids: list[str] = []
            floor: list[float] = []
            # Alternating rounds: a drift of the machine's other load hits both sides alike.
            for round_count in _rounds(count, concurrency):
                async with bench.phase(f"webhook reelflow @{concurrency}"):
                    ids += await closed_loop(
                        round_count,
                        concurrency,
                        lambda _: bench.run_execution([seedance_job("clip")]),
                    )
                async with bench.phase(f"webhook floor @{concurrency}"):
                    floors = await closed_loop(
                        round_count,
                        concurrency,
                        lambda _: bench.run_floor(FloorInput(provider_seconds=_PROVIDER_SECONDS)),
                    )
                floor += [(b.done_at - b.finished_at) * 1000 for r in floors for b in r.branches]
            latencies, failed = [], 0
            for execution_id in ids:
                done = await bench.done(execution_id)
                job = done.status["jobs"][0]
                if not done.completed or job["outputs"][0]["bytes"] != size:
                    failed += 1
                    continue
                finished = await bench.provider_finished_at(job["providerJobId"])
                latencies.append((parse_time(job["completedAt"]) - finished) * 1000)
            for label, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                bench.figure(
                    Figure(
                        NAME,
                        f"{label} @ {concurrency} in flight",
                        "ms",
                        percentile(latencies, fraction),
                        percentile(floor, fraction),
                        Target("ratio_at_most", 1.5) if label != "p95" else None,
                    )
                )
            if failed:
                bench.figure(Figure(NAME, f"failed @ {concurrency} in flight", "", failed))
            bench.extras.setdefault("webhook_samples", {})[concurrency] = {
                "reelflow_ms": latencies,
                "floor_ms": floor,
                "output_bytes": size,
            }
    finally:
        await bench.configure_emulator(
            {"public_url": bench.stack.emulator_url, "replicate": {"generation_seconds": 0}}
        )
