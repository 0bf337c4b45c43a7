"""The FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.limits import BodySizeLimit
from api.routes import events, executions, files, health, metrics, models, ui, webhooks
from api.schemas import ProblemList
from api.services import open_services
from reelflow.auth import is_loopback
from reelflow.config import Settings, get_settings
from reelflow.metrics import configure_tracing, instrument_app
from reelflow.plan import PlanInvalid

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def _problems(detail: str, problems: list[tuple[str, str]]) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={
            "detail": detail,
            "errors": [{"path": path, "message": message} for path, message in problems],
        },
    )


def _loc_path(loc: tuple[int | str, ...]) -> str:
    # FastAPI prefixes locations with where the value came from ("body", "header", ...).
    text = str(loc[0]) if loc else ""
    for part in loc[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; its clients are opened in the lifespan, once per process."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            if not services.api_keys.enabled and not is_loopback(settings.api_host):
                raise RuntimeError(
                    f"refusing to serve on {settings.api_host} without API keys: set"
                    " REELFLOW_API_KEYS (tenant:key,...) or API_HOST=127.0.0.1"
                )
            if not services.api_keys.enabled:
                logger.warning(
                    "No API keys configured (REELFLOW_API_KEYS): the API is open to anyone"
                    " who can reach %s",
                    settings.api_host,
                )
            app.state.services = services
            yield

    app = FastAPI(
        title="reelflow",
        summary="Asynchronous AI video generation as durable Temporal workflows",
        version="0.1.0",
        lifespan=lifespan,
    )

    @app.exception_handler(PlanInvalid)
    async def plan_invalid(request: Request, error: PlanInvalid) -> JSONResponse:
        return _problems("invalid execution plan", [(p.path, p.message) for p in error.problems])

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _problems(
            "invalid request",
            [(_loc_path(tuple(item["loc"])), item["msg"]) for item in error.errors()],
        )

    if configure_tracing(
        service_name="reelflow-api", endpoint=settings.otel_exporter_otlp_endpoint
    ):
        instrument_app(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_plan_bytes)
    # Every 422 is a ProblemList (the handlers above, and BodySizeLimit on any route), never
    # FastAPI's default HTTPValidationError, which the schema would otherwise declare.
    invalid: dict[int | str, dict[str, Any]] = {
        422: {"model": ProblemList, "description": "Invalid request"}
    }
    for module in (executions, events, webhooks, models, health, metrics, ui):
        app.include_router(module.router, responses=invalid)
    if settings.s3_bucket is None:
        # S3 objects are served by the bucket's CDN; local ones by the API, per tenant.
        app.include_router(files.router, responses=invalid)
    return app
