"""The migration runner: idempotent, serialised between processes, strict about edits."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from reelflow.db.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations


@pytest.fixture
async def empty_dsn(dsn: str) -> AsyncIterator[str]:
    """A new empty database on the test server."""
    name = f"reelflow_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_migrations_applied_twice_are_a_no_op(empty_dsn: str) -> None:
    first = await apply_migrations(empty_dsn)
    assert first == sorted(path.name for path in MIGRATIONS_DIR.glob("*.sql"))
    assert "0004_add_async_job_tracking.sql" in first
    assert await apply_migrations(empty_dsn) == []
    connection = await asyncpg.connect(empty_dsn)
    columns = {
        row["column_name"]
        for row in await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'execution_jobs'"
        )
    }
    await connection.close()
    assert {
        "provider_job_id",
        "provider_job_status",
        "waiting_strategy",
        "next_poll_at",
        "poll_attempts",
    } <= columns


async def test_processes_migrating_at_once_apply_each_migration_once(empty_dsn: str) -> None:
    results = await asyncio.gather(*(apply_migrations(empty_dsn) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(path.name for path in MIGRATIONS_DIR.glob("*.sql"))


async def test_editing_an_applied_migration_is_reported(empty_dsn: str, tmp_path: Path) -> None:
    edited = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, edited)
    await apply_migrations(empty_dsn, edited)
    path = edited / "0001_create_executions.sql"
    path.write_text(path.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="0001_create_executions.sql changed"):
        await apply_migrations(empty_dsn, edited)
