"""Stored objects of the local object store, served to the tenant that owns them."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from api.deps import ServicesDep, TenantDep
from reelflow.db import repository
from reelflow.storage import InvalidKey, LocalStore, validate_key

__all__ = ["router"]

router = APIRouter(tags=["files"])

_NOT_FOUND = HTTPException(status.HTTP_404_NOT_FOUND, "no such file")


@router.api_route("/files/{key:path}", methods=["GET", "HEAD"], response_class=FileResponse)
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
