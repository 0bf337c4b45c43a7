"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status

from api.deps import ServicesDep

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {"model": dict[str, str], "description": "A dependency is unavailable; see which"}
    },
)
async def readyz(services: ServicesDep, response: Response) -> dict[str, str]:
    """The database, Temporal and the object store all answer."""
    checks: dict[str, str] = {}
    for name, probe in (
        ("database", services.db.ping),
        ("temporal", services.temporal.service_client.check_health),
        ("storage", services.store.check),
    ):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as error:  # a probe reports any failure rather than raising it
            logger.warning("Readiness check %s failed: %s", name, type(error).__name__)
            checks[name] = "unavailable"
    if any(value != "ok" for value in checks.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return checks
