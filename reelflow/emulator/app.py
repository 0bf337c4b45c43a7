"""The emulator's FastAPI app: provider routers, admin endpoints and shared state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, FastAPI, HTTPException
from pydantic import ValidationError

from reelflow.emulator import fal, replicate, veo
from reelflow.emulator.config import EmulatorConfig
from reelflow.emulator.errors import ProviderHTTPError, handle_provider_http_error
from reelflow.emulator.outputs import OutputStore
from reelflow.emulator.state import EmulatorState, StateDep
from reelflow.emulator.webhooks import WebhookSender

__all__ = ["create_app"]

admin = APIRouter(prefix="/_emulator", tags=["emulator"])

_PATCH_EXAMPLES = [
    {"replicate": {"failure_rate": 0.5}},
    {"all": {"webhook_drop_rate": 0.2}, "veo": {"safety_filter_rate": 0.1}},
]


@admin.get("/config")
async def get_config(state: StateDep) -> dict[str, Any]:
    """The current configuration."""
    return state.config.model_dump(mode="json")


@admin.patch("/config")
async def patch_config(
    state: StateDep, changes: Annotated[dict[str, Any], Body(examples=_PATCH_EXAMPLES)]
) -> dict[str, Any]:
    """Change some knobs; the others keep their values. Applies to jobs already running.

    A provider section (`replicate`, `fal`, `veo`) changes only the knobs it names; `all` sets
    knobs in every section (below what a section itself says).
    """
    try:
        state.config = state.config.merged(changes)
    except ValidationError as error:
        detail = error.errors(include_url=False, include_context=False)
        raise HTTPException(422, detail=detail) from error
    except ValueError as error:
        raise HTTPException(422, detail=str(error)) from error
    return state.config.model_dump(mode="json")


@admin.get("/stats")
async def get_stats(state: StateDep) -> dict[str, Any]:
    """Per provider: jobs created (in total and per webhook URL) and canceled, webhooks sent,
    dropped and duplicated, 429s and 5xxs injected, output downloads; and totals."""
    return state.stats.as_json()


@admin.post("/reset", status_code=204)
async def reset(state: StateDep) -> None:
    """Stop and forget all jobs, pending webhooks, outputs and statistics."""
    await state.reset()


def create_app(config: EmulatorConfig) -> FastAPI:
    """Build the emulator app.

    Args:
        config: Initial configuration; `PATCH /_emulator/config` can change it later.

    Returns:
        An app serving Replicate under `/replicate`, fal's queue under `/fal`, the Gemini API
        (Veo) under `/gemini`, the admin API under `/_emulator` and `GET /healthz`. Its state
        (jobs, outputs, the webhook HTTP client) lives from lifespan start to lifespan end.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        outputs = OutputStore()
        # Webhooks go to the user's own services: never through a proxy from the environment.
        async with httpx.AsyncClient(trust_env=False) as client:
            state = EmulatorState(config=config, outputs=outputs, webhooks=WebhookSender(client))
            app.state.emulator = state
            for backend in (
                replicate.ReplicateBackend(state),
                fal.FalBackend(state),
                veo.VeoBackend(state),
            ):
                state.backends[backend.provider] = backend
            try:
                yield
            finally:
                await state.reset()
                outputs.close()

    app = FastAPI(title="reelflow provider emulator", lifespan=lifespan)
    app.exception_handler(ProviderHTTPError)(handle_provider_http_error)
    app.include_router(replicate.router, prefix=replicate.PREFIX)
    app.include_router(fal.router, prefix=fal.PREFIX)
    app.include_router(veo.router, prefix=veo.PREFIX)
    app.include_router(admin)

    @app.get("/healthz", tags=["emulator"])
    async def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    return app
