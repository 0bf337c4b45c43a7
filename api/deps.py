"""Typed dependencies of the API's routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.schemas import ErrorDetail
from api.services import Services
from reelflow.auth import DEFAULT_TENANT

__all__ = ["UNAUTHORIZED", "ServicesDep", "TenantDep"]


def get_services(request: Request) -> Services:
    """The services opened in the app's lifespan."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

# Either header carries the key; both appear in the OpenAPI schema.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


def get_tenant(
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> str:
    """The tenant whose API key the request carries (the default tenant when keys are off)."""
    if not services.api_keys.enabled:
        return DEFAULT_TENANT
    presented = bearer.credentials if bearer is not None else api_key
    tenant = services.api_keys.tenant_for(presented) if presented else None
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid API key is required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing or invalid API key (when keys are set)"}
}
"""The answer every route that takes `TenantDep` may give; declare it on their routers."""
