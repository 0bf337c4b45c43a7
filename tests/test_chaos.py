"""A small chaos run (`tests/chaos.py`) inside the test suite: real processes, every emulator
fault, one worker and one API SIGKILL; nothing may be lost, stuck, stored twice or billed twice."""

from __future__ import annotations

from rich.console import Console

from tests.chaos import ChaosOptions, print_report, run_chaos


async def test_faults_and_kills_lose_nothing_and_bill_nothing_twice() -> None:
    console = Console(stderr=True, width=160)

    report = await run_chaos(
        ChaosOptions(executions=10, worker_kills=1, api_kills=1, seed=20251130, timeout_s=240),
        console,
    )

    print_report(report, console)
    counts = report.counts
    assert counts["submitted"] == 10, report.failures()
    assert counts["lost"] == 0, report.failures()
    assert counts["unexpected_executions"] == 0, report.failures()
    assert counts["stuck_jobs"] == 0, report.failures()
    assert counts["failed_otherwise"] == 0, report.failures()
    extra = counts["duplicate_provider_jobs"]
    assert extra == 0 or counts["provider_jobs_canceled"] >= extra, report.failures()
    assert counts["outputs_stored_once"] == counts["outputs"] > 0, report.failures()
    assert counts["stray_objects"] == 0, report.failures()
    assert counts["worker_kills"] == 1 and counts["api_kills"] == 1, report.failures()
    assert report.passed, report.failures()
    assert not report.state_kept
