"""The reelflow worker: builds the clients and activity instances, then runs the Temporal worker."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from activities.media import MediaActivities
from activities.persist import PersistActivities
from activities.provider_jobs import ProviderJobActivities
from activities.records import RecordActivities
from activities.retention import RetentionActivities
from reelflow.config import Settings, get_settings
from reelflow.db.engine import Database
from reelflow.db.migrate import apply_migrations
from reelflow.embedded import database_url
from reelflow.logs import configure_logging
from reelflow.metrics import configure_tracing, serve_worker_metrics
from reelflow.netguard import HostAllowlist, guarded_client, split_list
from reelflow.providers import build_providers
from reelflow.storage import ObjectStore, create_store
from reelflow.temporal import connect, media_task_queue, provider_task_queue, workflow_runner
from workflows.execution import ExecutionWorkflow
from workflows.orphan import CancelOrphanWorkflow
from workflows.provider_job import ProviderJobWorkflow
from workflows.retention import RetentionWorkflow, ensure_retention_schedule

__all__ = ["build_workers", "main", "run_worker"]

logger = logging.getLogger("reelflow.worker")

_PROVIDERS = ("replicate", "fal", "veo")


def _download_rules(
    settings: Settings, store: ObjectStore
) -> tuple[list[str], dict[str, HostAllowlist], HostAllowlist]:
    """The origins downloads may reach at private addresses, each provider's output allowlist,
    and the allowlist of media inputs and Veo input images (our store, the provider hosts and
    MEDIA_INPUT_ALLOWED_HOSTS). See reelflow.netguard."""
    origins = split_list(settings.download_allowed_origins)
    # Our own objects (e.g. a thumbnail given to Veo as its image), even on the local store.
    store_base = store.public_url("x").removesuffix("x")
    outputs = {
        name: HostAllowlist(
            f"{name} outputs", split_list(settings.output_hosts(name)), origins=origins
        )
        for name in _PROVIDERS
    }
    provider_hosts = [
        host for name in _PROVIDERS for host in split_list(settings.output_hosts(name))
    ]
    inputs = HostAllowlist(
        "media inputs",
        [*split_list(settings.media_input_allowed_hosts), *provider_hosts],
        origins=[*origins, store_base],
    )
    return [*origins, store_base], outputs, inputs


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
    downloads: httpx.AsyncClient | None = None
    try:
        if client is None:
            configure_tracing(
                service_name="reelflow-worker",
                endpoint=settings.otel_exporter_otlp_endpoint,
            )
            runtime = serve_worker_metrics(
                host=settings.worker_metrics_host, port=settings.worker_metrics_port
            )
            client = await connect(settings, runtime=runtime)
        store = create_store(settings)
        trusted, output_hosts, input_hosts = _download_rules(settings, store)
        # URLs from providers and plans are fetched by a client of their own that connects only
        # to public addresses and the trusted origins (reelflow.netguard).
        downloads = guarded_client(trusted_origins=trusted, timeout=settings.http_timeout_s)
        providers = build_providers(settings, http, image_http=downloads, image_hosts=input_hosts)
        provider_jobs = ProviderJobActivities(db=db, providers=providers)
        records = RecordActivities(db=db)
        persist = PersistActivities(
            http=downloads,
            store=store,
            providers=providers,
            allowed_hosts=output_hosts,
            max_output_bytes=settings.max_output_bytes,
            records=records,
        )
        media = MediaActivities(
            http=downloads,
            store=store,
            allowed_hosts=input_hosts,
            max_input_bytes=settings.max_media_input_bytes,
        )
        retention = RetentionActivities(db=db, store=store)
        workers = [
            Worker(
                client,
                task_queue=settings.task_queue,
                workflow_runner=workflow_runner(),
                # Retention is registered even when off, so a schedule left from earlier runs.
                workflows=[
                    ExecutionWorkflow,
                    ProviderJobWorkflow,
                    CancelOrphanWorkflow,
                    RetentionWorkflow,
                ],
                activities=[
                    persist.persist,
                    records.record_job,
                    records.record_execution,
                    retention.purge_finished_executions,
                ],
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
        if settings.retention_days is not None:
            await ensure_retention_schedule(
                client,
                task_queue=settings.task_queue,
                older_than=timedelta(days=settings.retention_days),
                delete_objects=settings.retention_delete_objects,
            )
        yield workers
    finally:
        if downloads is not None:
            await downloads.aclose()
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
