"""The scenarios of the performance issue, each `async def run(bench)` reporting figures.

They run in this order on one stack per run; waiting comes last because it leaves a thousand
jobs open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bench.harness import Bench
from bench.scenarios import big_output, polling, status_reads, throughput, waiting, webhook

__all__ = ["SCENARIOS", "Scenario"]

Scenario = Callable[[Bench], Awaitable[None]]

SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "webhook": (webhook.NAME, webhook.run),
    "polling": (polling.NAME, polling.run),
    "throughput": (throughput.NAME, throughput.run),
    "status": (status_reads.NAME, status_reads.run),
    "big-output": (big_output.NAME, big_output.run),
    "waiting": (waiting.NAME, waiting.run),
}
"""By command-line name: the table's name and the scenario, in running order."""
