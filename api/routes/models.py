"""The model registry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import UNAUTHORIZED, ServicesDep, TenantDep
from reelflow.providers.registry import MODELS

__all__ = ["router"]

router = APIRouter(prefix="/api/models", tags=["models"], responses=UNAUTHORIZED)


@router.get("")
async def list_models(services: ServicesDep, tenant: TenantDep) -> dict[str, list[dict[str, Any]]]:
    """Every model, its provider, capabilities, params schema and price; `available` says
    whether this deployment has credentials for its provider."""
    return {
        "models": [
            {**model.describe(), "available": model.provider in services.providers}
            for model in MODELS.values()
        ]
    }
