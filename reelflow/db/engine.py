"""The database connections of a process: SQLAlchemy over asyncpg, and asyncpg alone for the
hot paths; created once per process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = ["Database"]


class Database:
    """SQLAlchemy's connection pool and the sessions made from it, and a small asyncpg pool of
    its own for `fetchval`."""

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self._dsn = dsn.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._pool_size = pool_size
        self.engine: AsyncEngine = create_async_engine(
            self._dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            pool_size=pool_size,
            pool_pre_ping=True,
        )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._raw: asyncpg.Pool | None = None
        self._raw_lock = asyncio.Lock()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends without an error."""
        async with self._sessions() as session, session.begin():
            yield session

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row of a query, run on asyncpg itself.

        For the hot paths, where SQLAlchemy's statement building, session and pre-ping would
        cost more than the database (0.8 to several milliseconds of CPU against 0.3). The query
        uses asyncpg's `$1` parameters and commits on its own; a connection the server closed
        is replaced by the pool when next acquired.
        """
        pool = self._raw or await self._raw_pool()
        return await pool.fetchval(query, *args)

    async def _raw_pool(self) -> asyncpg.Pool:
        # Opened on first use: a process that never takes a hot path holds no extra connections.
        async with self._raw_lock:
            if self._raw is None:
                self._raw = await asyncpg.create_pool(
                    self._dsn, min_size=1, max_size=max(2, self._pool_size // 2)
                )
            return self._raw

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._raw is not None:
            await self._raw.close()
        await self.engine.dispose()
