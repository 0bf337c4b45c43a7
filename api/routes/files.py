"""Stored objects of the local object store, served to the tenant that owns them."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from api.deps import UNAUTHORIZED, ServicesDep, TenantDep
from api.schemas import ErrorDetail
from reelflow.db import repository
from reelflow.storage import InvalidKey, LocalStore, validate_key

__all__ = ["router"]

router = APIRouter(
    tags=["files"],
    responses={**UNAUTHORIZED, 404: {"model": ErrorDetail, "description": "No such file"}},
)

_NOT_FOUND = HTTPException(status.HTTP_404_NOT_FOUND, "no such file")


# The first route (the last decorator) serves both methods, so a 405 lists both in `Allow`; the
# schema gets an operation per method from the two after it, which it shadows: one route with two
# methods would give both operations one operationId, which OpenAPI forbids.
@router.get("/files/{key:path}", response_class=FileResponse, operation_id="get_file")
@router.head("/files/{key:path}", response_class=FileResponse, operation_id="head_file")
@router.api_route(
    "/files/{key:path}",
    methods=["GET", "HEAD"],
    response_class=FileResponse,
    include_in_schema=False,
)
async def get_file(services: ServicesDep, tenant: TenantDep, key: str) -> FileResponse:
    """An output of one of the tenant's executions (keys: `executions/<executionId>/...`)."""
    store = services.store
    try:
        key = validate_key(key)
    except InvalidKey as error:
        raise _NOT_FOUND from error
    parts = key.split("/")
    if not isinstance(store, LocalStore) or len(parts) < 3 or parts[0] != "executions":
        raise _NOT_FOUND
    async with services.db.session() as session:
        execution = await repository.get_execution(
            session=session, execution_id=parts[1], tenant=tenant
        )
    path = store.root / key
    if execution is None or not path.is_file():
        raise _NOT_FOUND
    media_type, _ = mimetypes.guess_type(key)
    return FileResponse(path, media_type=media_type or "application/octet-stream")
