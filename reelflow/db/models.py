"""SQLModel tables; the schema itself is owned by the SQL files in `migrations/`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Numeric, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

__all__ = ["Execution", "ExecutionJob", "WebhookDelivery"]


def _timestamp(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


def _jsonb(name: str | None = None) -> Any:
    column = Column(name, JSONB, nullable=False) if name else Column(JSONB, nullable=False)
    return Field(sa_column=column)


class Execution(SQLModel, table=True):
    """A submitted execution plan."""

    __tablename__ = "executions"

    id: str = Field(primary_key=True)
    status: str
    plan: dict[str, Any] = _jsonb()
    # `metadata` is taken by SQLModel itself, hence the attribute name.
    meta: dict[str, Any] = _jsonb("metadata")
    tenant: str = "default"
    idempotency_key: str | None = Field(default=None, sa_column=Column(Text))
    error: str | None = None
    created_at: datetime = _timestamp(nullable=False)
    updated_at: datetime = _timestamp(nullable=False)
    completed_at: datetime | None = _timestamp()


class ExecutionJob(SQLModel, table=True):
    """One job of an execution."""

    __tablename__ = "execution_jobs"

    id: str = Field(primary_key=True)
    execution_id: str = Field(foreign_key="executions.id")
    job_id: str
    position: int
    operation: str
    model_id: str | None = None
    provider: str | None = None
    params: dict[str, Any] = _jsonb()
    depends_on: list[str] = _jsonb()
    continue_on_error: bool = False
    status: str
    outputs: list[dict[str, Any]] = _jsonb()
    error: str | None = None
    progress: float | None = None
    provider_job_id: str | None = None
    provider_job_status: str | None = None
    waiting_strategy: str | None = None
    next_poll_at: datetime | None = _timestamp()
    poll_attempts: int = 0
    compute_seconds: float | None = None
    cost_usd: Decimal | None = Field(default=None, sa_column=Column(Numeric(12, 4)))
    created_at: datetime = _timestamp(nullable=False)
    updated_at: datetime = _timestamp(nullable=False)
    started_at: datetime | None = _timestamp()
    completed_at: datetime | None = _timestamp()


class WebhookDelivery(SQLModel, table=True):
    """A verified webhook delivery, remembered to recognise redeliveries."""

    __tablename__ = "webhook_deliveries"

    provider: str = Field(primary_key=True)
    delivery_id: str = Field(primary_key=True)
    job_record_id: str
    outcome: str
    received_at: datetime = _timestamp(nullable=False)
