"""An execution's live state as Server-Sent Events.

`GET /api/executions/{executionId}/events` streams `text/event-stream`:

```
event: execution
data: {"executionId": "…", "status": "running", "error": null, "costUsd": 0.0, …}
id: 7412:7415:7413-0

event: job
data: {"id": "clip", "jobRecordId": "…", "status": "processing", "progress": 0.5, …}
id: 7412:7415:7413

event: job
data: {"id": "clip", "jobRecordId": "…", "status": "completed", "progress": 1.0, …}
id: 7431:7431:

event: execution
data: {"executionId": "…", "status": "completed", …}
id: 7433:7433:

event: end
data: {"executionId": "…", "status": "completed", …}
id: 7433:7433:
```

`execution` events carry `ExecutionEventView`, `job` events a job exactly as
`GET /api/status` shows it (`JobView`), and `end` the final `ExecutionEventView`, after which the
server closes the stream (a browser's EventSource must `close()` on `end`; otherwise it
reconnects, and receives `end` again). A fresh stream starts with the current state of the
execution and of every job. Reconnecting with the last id received (the `Last-Event-ID` header,
which `EventSource` sends by itself, or `?lastEventId=` where headers cannot be set; the header
wins) sends exactly the changes missed. Ids are opaque (how they make resuming exact is explained in
`reelflow.live`). Comment lines (`: ping`) keep idle connections open every 15 s. A stream lasts
at most an hour; the client then reconnects with its last id.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from api.deps import ServicesDep, TenantDep
from api.schemas import ErrorDetail, JobView
from reelflow.db import repository
from reelflow.db.models import Execution
from reelflow.live import (
    CURSOR_PATTERN,
    Cursor,
    ExecutionChange,
    ExecutionEnd,
    InvalidCursor,
    JobChange,
    follow_execution,
)

__all__ = ["ExecutionEventView", "router"]

router = APIRouter(prefix="/api", tags=["executions"])


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# Refusals are JSON, not events. Declared with explicit content: FastAPI would document a `model`
# under the route's own media type, text/event-stream. (These entries also replace the app-wide
# 422 and the 401 of the other routers, which use `model`.)
_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: _json("Missing or invalid API key (when keys are set)", ErrorDetail.model_json_schema()),
    404: _json("No such execution", ErrorDetail.model_json_schema()),
    422: _json("Invalid request", {"$ref": "#/components/schemas/ProblemList"}),
}

# Server-side cap on one stream; EventSource reconnects with its last id when it closes.
STREAM_MAX_SECONDS = 3600.0


class ExecutionEventView(BaseModel):
    """The data of `execution` and `end` events."""

    executionId: str
    status: str
    error: str | None
    costUsd: float
    """Sum of the jobs' estimated costs so far."""
    updatedAt: datetime
    completedAt: datetime | None

    @classmethod
    def of(cls, execution: Execution, cost_usd: Decimal) -> ExecutionEventView:
        """Build from the execution row and its jobs' cost."""
        return cls(
            executionId=execution.id,
            status=execution.status,
            error=execution.error,
            costUsd=float(cost_usd),
            updatedAt=execution.updated_at,
            completedAt=execution.completed_at,
        )


async def readable_execution_id(services: ServicesDep, tenant: TenantDep, execution_id: str) -> str:
    """The execution id, once it is known to be the tenant's (404 before any stream starts)."""
    async with services.db.session() as session:
        execution = await repository.get_execution(
            session=session, execution_id=execution_id, tenant=tenant
        )
    if execution is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no execution {execution_id!r}")
    return execution.id


def _event(change: ExecutionChange | JobChange | ExecutionEnd) -> ServerSentEvent:
    if isinstance(change, JobChange):
        return ServerSentEvent(event="job", data=JobView.of(change.job), id=str(change.cursor))
    return ServerSentEvent(
        event="end" if isinstance(change, ExecutionEnd) else "execution",
        data=ExecutionEventView.of(change.execution, change.cost_usd),
        id=str(change.cursor),
    )


def resume_cursor(
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=CURSOR_PATTERN,
            max_length=4096,
            description="The id of the last event received: resume after it",
        ),
    ] = None,
    last_event_id_param: Annotated[
        str | None,
        Query(
            alias="lastEventId",
            pattern=CURSOR_PATTERN,
            max_length=4096,
            description="As `Last-Event-ID`, for clients that cannot set headers",
        ),
    ] = None,
) -> Cursor | None:
    """Where to resume (None: from the start), checked before any stream starts."""
    # EventSource reconnects to the same URL with the header set: the header is the newer id.
    given, where = (
        (last_event_id, ("header", "Last-Event-ID"))
        if last_event_id
        else (last_event_id_param, ("query", "lastEventId"))
    )
    if not given:
        return None
    try:
        return Cursor.parse(given)
    except InvalidCursor as error:
        raise RequestValidationError(
            [{"type": "value_error", "loc": where, "msg": str(error), "input": given}]
        ) from error


@router.get(
    "/executions/{execution_id}/events",
    response_class=EventSourceResponse,
    responses=_REFUSALS,
)
async def execution_events(
    request: Request,
    services: ServicesDep,
    execution_id: Annotated[str, Depends(readable_execution_id)],
    after: Annotated[Cursor | None, Depends(resume_cursor)],
) -> AsyncIterable[ServerSentEvent]:
    """The execution's state, then each change of it or of its jobs, until it ends."""
    changes = follow_execution(
        db=services.db,
        execution_id=execution_id,
        after=after,
        stop=request.is_disconnected,
        max_duration_s=STREAM_MAX_SECONDS,
    )
    async for change in changes:
        yield _event(change)
