"""The reelflow worker: builds the clients and activity instances, then runs the Temporal worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

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
from reelflow.temporal import connect
from workflows.execution import ExecutionWorkflow
from workflows.provider_job import ProviderJobWorkflow

__all__ = ["build_worker", "main", "run_worker"]

logger = logging.getLogger("reelflow.worker")

# Outputs larger than this are refused rather than filling the disk.
MAX_OUTPUT_BYTES = 2 * 1024**3


@asynccontextmanager
async def build_worker(settings: Settings, client: Client | None = None) -> AsyncIterator[Worker]:
    """A worker for reelflow's task queue with every workflow and activity registered."""
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
            http=http, store=store, providers=providers, max_output_bytes=MAX_OUTPUT_BYTES
        )
        records = RecordActivities(db=db)
        yield Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[ExecutionWorkflow, ProviderJobWorkflow],
            activities=[
                provider_jobs.start_job,
                provider_jobs.poll_job,
                provider_jobs.cancel_job,
                persist.persist,
                records.record_job,
                records.record_execution,
            ],
        )
    finally:
        await http.aclose()
        await db.close()


async def run_worker(settings: Settings) -> None:
    """Run the worker until cancelled."""
    async with build_worker(settings) as worker:
        logger.info(
            "Worker polling task queue %r on %s", settings.task_queue, settings.temporal_address
        )
        await worker.run()


def main() -> None:
    """Entry point of `python worker.py`."""
    configure_logging()
    try:
        asyncio.run(run_worker(get_settings()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
