"""The floor's worker process: `python -m bench.floor.worker --address HOST:PORT --task-queue Q`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from bench.floor.activities import FloorActivities
from bench.floor.types import FloorEvent
from bench.floor.workflows import FloorWorkflow

__all__ = ["main", "run"]


async def run(address: str, task_queue: str) -> None:
    """Serve the floor workflow and its activities until SIGTERM."""
    client = await Client.connect(address)

    async def notify(workflow_id: str, event: FloorEvent) -> None:
        await client.get_workflow_handle(workflow_id).signal(FloorWorkflow.provider_event, event)

    activities = FloorActivities(notify)
    # Worker settings are the SDK's defaults, as reelflow's main worker uses.
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[FloorWorkflow],
        activities=[
            activities.start,
            activities.poll,
            activities.persist,
            activities.record,
        ],
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with worker:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor.worker")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args(argv)
    asyncio.run(run(args.address, args.task_queue))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal runtime can abort the interpreter while it finalises (sdk-python #300).
    os._exit(0)
