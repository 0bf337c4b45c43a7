"""The clients the API process creates once, in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from temporalio.client import Client

from reelflow.auth import ApiKeys, load_webhook_secret
from reelflow.config import Settings
from reelflow.db.engine import Database
from reelflow.db.migrate import apply_migrations
from reelflow.embedded import database_url
from reelflow.providers import Provider, build_providers
from reelflow.storage import ObjectStore, create_store
from reelflow.temporal import connect

__all__ = ["Services", "open_services"]


@dataclass(frozen=True)
class Services:
    """Everything a request handler may need."""

    settings: Settings
    db: Database
    temporal: Client
    providers: dict[str, Provider]
    store: ObjectStore
    api_keys: ApiKeys
    webhook_secret: bytes


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Migrate the database, connect to Temporal and the providers; close it all at the end."""
    dsn = database_url(settings)
    await apply_migrations(dsn)
    db = Database(dsn)
    http = httpx.AsyncClient(timeout=settings.http_timeout_s)
    try:
        temporal = await connect(settings)
        yield Services(
            settings=settings,
            db=db,
            temporal=temporal,
            providers=build_providers(settings, http),
            store=create_store(settings),
            api_keys=ApiKeys(settings.reelflow_api_keys),
            webhook_secret=load_webhook_secret(settings.webhook_token_secret, settings.state_dir),
        )
    finally:
        await http.aclose()
        await db.close()
