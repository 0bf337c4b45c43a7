"""The reelflow worker: builds the clients and activity instances, then runs the Temporal worker."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.media import MediaActivities
from activities.persist import PersistActivities
from activities.provider_jobs import ProviderJobActivities
from activities.records import RecordActivities
from reelflow.config import Settings, get_settings
from reelflow.db.engine import Database
from reelflow.db.migrate import apply_migrations
from reelflow.embedded import database_url
from reelflow.logs import configure_logging
from reelflow.providers import build_providers
from reelflow.storage import create_store
from reelflow.temporal import connect, media_task_queue, provider_task_queue
from workflows.execution import ExecutionWorkflow
from workflows.orphan import CancelOrphanWorkflow
from workflows.provider_job import ProviderJobWorkflow

__all__ = ["build_workers", "main", "run_worker"]

logger = logging.getLogger("reelflow.worker")

# Outputs larger than this are refused rather than filling the disk.
MAX_OUTPUT_BYTES = 2 * 1024**3


@asynccontextmanager
async def build_workers(
    settings: Settings, client: Client | None = None
) -> AsyncIterator[list[Worker]]:
    """reelflow's workers: one for the workflows, storage and database activities, and one per
    configured provider, whose task queue Temporal rate-limits across every worker process, and
    one for media operations."""
    dsn = database_url(settings)
    await apply_migrations(dsn)
    db = Database(dsn)
    # No transport retries: Temporal retries activities, and each attempt shows in history.
    http = httpx.AsyncClient(timeout=settings.http_timeout_s)
    try:
        client = client or await connect(settings)
        providers = build_providers(settings, http)
        store = create_store(settings)
        provider_jobs = ProviderJobActivities(db=db, providers=providers)
        persist = PersistActivities(
            http=http,
            store=store,
            providers=providers,
            max_output_bytes=MAX_OUTPUT_BYTES,
        )
        records = RecordActivities(db=db)
        media = MediaActivities(http=http, store=store, max_input_bytes=MAX_OUTPUT_BYTES)
        workers = [
            Worker(
                client,
                task_queue=settings.task_queue,
                workflows=[ExecutionWorkflow, ProviderJobWorkflow, CancelOrphanWorkflow],
                activities=[persist.persist, records.record_job, records.record_execution],
            ),
            # Media work is CPU-bound: a queue of its own lets it run on separate machines.
            Worker(
                client,
                task_queue=media_task_queue(settings.task_queue),
                activities=[media.concat, media.thumbnail],
                max_concurrent_activities=settings.max_concurrent_media_jobs,
            ),
        ]
        for name in providers:
            workers.append(
                Worker(
                    client,
                    task_queue=provider_task_queue(settings.task_queue, name),
                    activities=[
                        provider_jobs.start_job,
                        provider_jobs.poll_job,
                        provider_jobs.cancel_job,
                    ],
                    max_task_queue_activities_per_second=settings.activities_per_second(name),
                )
            )
        yield workers
    finally:
        await http.aclose()
        await db.close()


async def run_worker(settings: Settings) -> None:
    """Run the workers until cancelled."""
    async with build_workers(settings) as workers:
        logger.info(
            "Worker polling task queue %r and its media and provider queues %s on %s",
            settings.task_queue,
            [worker.task_queue for worker in workers[1:]],
            settings.temporal_address,
        )
        # A task group: should one worker fail, the others stop too rather than run half a
        # service.
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())


async def _run_until_signalled(settings: Settings) -> None:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM (from `reelflow dev`, docker, systemd) shuts down as gracefully as Ctrl-C.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await run_worker(settings)
    except asyncio.CancelledError:
        logger.info("Worker stopped")


def main() -> None:
    """Entry point of `python worker.py` and `reelflow worker`."""
    configure_logging()
    try:
        asyncio.run(_run_until_signalled(get_settings()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
