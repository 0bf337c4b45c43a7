"""The async SQLAlchemy engine over asyncpg, created once per process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

__all__ = ["Database"]


class Database:
    """A connection pool and the sessions made from it."""

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self.engine: AsyncEngine = create_async_engine(
            dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            pool_size=pool_size,
            pool_pre_ping=True,
        )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends without an error."""
        async with self._sessions() as session, session.begin():
            yield session

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row of a query, run on asyncpg itself.

        For the hot paths, where SQLAlchemy's statement building and session would cost more
        than the database (several milliseconds of CPU against a fraction of one). The query
        uses asyncpg's `$1` parameters and commits on its own.
        """
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            assert raw.driver_connection is not None, "a checked-out connection has a driver"
            return await raw.driver_connection.fetchval(query, *args)

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
