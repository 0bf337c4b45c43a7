"""Submitting execution plans and reading their status."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from api.deps import UNAUTHORIZED, ServicesDep, TenantDep
from api.schemas import (
    ErrorDetail,
    ExecutionAccepted,
    ExecutionPage,
    ExecutionStatusView,
    ExecutionSummary,
    ProblemList,
)
from reelflow.db import repository
from reelflow.db.status import execution_status_json
from reelflow.executions import (
    ExecutionFinished,
    ExecutionNotFound,
    StartFailed,
    cancel_execution,
    submit_execution,
)
from reelflow.plan import validate_submission

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["executions"], responses=UNAUTHORIZED)


@router.post(
    "/execute",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExecutionAccepted,
    responses={
        # FastAPI's answer when Python's JSON parser fails other than on syntax (nesting too
        # deep for it, a number too long for int()).
        400: {"model": ErrorDetail, "description": "The body could not be parsed"},
        422: {"model": ProblemList},
        503: {"model": ErrorDetail, "description": "Temporal is unavailable"},
    },
)
async def execute(
    services: ServicesDep,
    tenant: TenantDep,
    response: Response,
    body: Annotated[Any, Body(description="`{executionPlan: {jobs: [...]}, metadata?}`")],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> ExecutionAccepted:
    """Validate a plan, record it and start its workflow; the work happens asynchronously."""
    plan = validate_submission(body, providers=services.providers.keys())
    try:
        submission = await submit_execution(
            db=services.db,
            temporal=services.temporal,
            settings=services.settings,
            webhook_secret=services.webhook_secret,
            tenant=tenant,
            plan=plan,
            raw_plan=body,
            idempotency_key=idempotency_key,
        )
    except StartFailed as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from error
    accepted = ExecutionAccepted.of(submission.execution, submission.jobs)
    response.headers["Location"] = accepted.statusUrl
    return accepted


@router.get(
    "/status/{execution_id}",
    response_model=ExecutionStatusView,
    responses={404: {"model": ErrorDetail, "description": "No such execution"}},
)
async def execution_status(services: ServicesDep, tenant: TenantDep, execution_id: str) -> Response:
    """The execution and every job: status, provider tracking, outputs, errors."""
    document = await execution_status_json(services.db, execution_id=execution_id, tenant=tenant)
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no execution {execution_id!r}")
    return Response(document, media_type="application/json")


@router.post(
    "/executions/{execution_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"model": ErrorDetail, "description": "No such execution"},
        409: {"model": ErrorDetail, "description": "Already over"},
    },
)
async def cancel(services: ServicesDep, tenant: TenantDep, execution_id: str) -> dict[str, str]:
    """Ask a running execution to cancel; its provider jobs are cancelled at the providers."""
    try:
        await cancel_execution(
            db=services.db, temporal=services.temporal, tenant=tenant, execution_id=execution_id
        )
    except ExecutionNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no execution {execution_id!r}") from error
    except ExecutionFinished as error:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"execution {execution_id} is already {error}"
        ) from error
    return {"executionId": execution_id, "status": "canceling"}


def _encode_cursor(created_at: datetime, execution_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), execution_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, execution_id = json.loads(raw)
        return datetime.fromisoformat(created_at), str(execution_id)
    except (binascii.Error, ValueError, TypeError) as error:
        # Answered like any other bad query parameter: a ProblemList located at `query.cursor`.
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "cursor"),
                    "msg": "not a cursor this API returned",
                    "input": cursor,
                }
            ]
        ) from error


@router.get("/executions", response_model=ExecutionPage)
async def list_executions(
    services: ServicesDep,
    tenant: TenantDep,
    request: Request,
    status_: Annotated[
        Literal["queued", "running", "completed", "failed", "canceled"] | None,
        Query(alias="status"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ExecutionPage:
    """Executions, newest first, with cursor pagination that stays stable as new ones arrive."""
    repeated = [
        n for n in ("status", "limit", "cursor") if len(request.query_params.getlist(n)) > 1
    ]
    if repeated:
        # FastAPI would silently keep the last value; an ambiguous query is refused instead.
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": "given more than once", "type": "value_error"}
                for name in repeated
            ]
        )
    before = _decode_cursor(cursor) if cursor else None
    async with services.db.session() as session:
        rows = await repository.list_executions(
            session=session, tenant=tenant, status=status_, limit=limit + 1, before=before
        )
        page = rows[:limit]
        counts = await repository.count_jobs(
            session=session, execution_ids=[row.id for row in page]
        )
    next_cursor = None
    if len(rows) > limit:
        next_cursor = _encode_cursor(page[-1].created_at, page[-1].id)
    return ExecutionPage(
        executions=[ExecutionSummary.of(row, counts.get(row.id, 0)) for row in page],
        nextCursor=next_cursor,
    )
