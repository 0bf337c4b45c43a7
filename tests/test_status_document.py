"""The status document PostgreSQL builds (`reelflow.db.status`) says what the ORM rows say,
in the shape of `ExecutionStatusView`, with every kind of value a job can hold."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from api.schemas import ExecutionStatusView, JobView
from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.db.models import Execution, ExecutionJob
from reelflow.db.status import execution_status_json

OUTPUT = {
    "url": "http://127.0.0.1:3000/files/executions/e/j/output-0.mp4",
    "key": "executions/e/j/output-0.mp4",
    "content_type": "video/mp4",
    "bytes": 33149,
    "sha256": "ab" * 32,
    "duration_s": 5.0,
    "width": 160,
    "height": 90,
    "fps": 24.0,
}
THUMBNAIL = {
    "url": "http://127.0.0.1:3000/files/executions/e/t/output-0.jpg",
    "key": "executions/e/t/output-0.jpg",
    "content_type": "image/jpeg",
    "bytes": 2048,
    "sha256": "cd" * 32,
    "duration_s": None,
    "width": None,
    "height": None,
    "fps": None,
}


def _job(execution: Execution, position: int, **values: object) -> ExecutionJob:
    now = execution.created_at
    defaults: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "execution_id": execution.id,
        "job_id": f"job{position}",
        "position": position,
        "operation": "pipeline:generate",
        "params": {"prompt": "p"},
        "depends_on": [],
        "status": "pending",
        "outputs": [],
        "created_at": now,
        "updated_at": now,
    }
    return ExecutionJob(**{**defaults, **values})  # type: ignore[arg-type]


async def test_the_document_matches_the_rows(db: Database) -> None:
    now = repository.utcnow().replace(microsecond=123456)
    execution = Execution(
        id=str(uuid.uuid4()),
        status="running",
        plan={"jobs": []},
        meta={"project": "ads", "nested": {"n": [1, 2.5, None]}, "ünïcode": "✓"},
        tenant="acme",
        error=None,
        created_at=now,
        updated_at=now + timedelta(seconds=1),
    )
    jobs = [
        _job(
            execution,
            0,
            model_id="bytedance/seedance-1-lite",
            provider="replicate",
            status="completed",
            waiting_strategy="webhook",
            provider_job_id="pred-1",
            provider_job_status="succeeded",
            poll_attempts=2,
            progress=1.0,
            compute_seconds=12.5,
            cost_usd=Decimal("0.1250"),
            outputs=[OUTPUT],
            started_at=now,
            completed_at=now + timedelta(seconds=30),
        ),
        _job(
            execution,
            1,
            model_id="fal-ai/veo3",
            provider="fal",
            status="processing",
            waiting_strategy="polling",
            provider_job_id="req-2",
            poll_attempts=3,
            next_poll_at=now.replace(microsecond=0) + timedelta(seconds=7),
            progress=0.4,
            cost_usd=Decimal("2.0000"),
        ),
        _job(
            execution,
            2,
            job_id="poster",
            operation="pipeline:thumbnail",
            depends_on=["job0"],
            status="failed",
            error='the input "x" is not a video\nline two',
            outputs=[THUMBNAIL],
        ),
    ]
    async with db.session() as session:
        # Stored out of order: the document lists jobs in plan order.
        await repository.add_execution(session=session, execution=execution, jobs=jobs[::-1])

    document = await execution_status_json(db, execution_id=execution.id, tenant="acme")

    assert document is not None
    view = ExecutionStatusView.model_validate_json(document)
    assert view.model_dump() == {
        "executionId": execution.id,
        "status": "running",
        "metadata": execution.meta,
        "error": None,
        "createdAt": execution.created_at,
        "updatedAt": execution.updated_at,
        "completedAt": None,
        "costUsd": 2.125,
        "jobs": [JobView.of(job).model_dump() for job in jobs],
    }
    assert list(view.model_dump(by_alias=True)) == list(ExecutionStatusView.model_fields)


async def test_another_tenant_or_an_unknown_id_gets_nothing(db: Database) -> None:
    now = repository.utcnow()
    execution = Execution(
        id=str(uuid.uuid4()),
        status="completed",
        plan={},
        meta={},
        tenant="acme",
        created_at=now,
        updated_at=now,
        completed_at=now,
    )
    async with db.session() as session:
        await repository.add_execution(session=session, execution=execution, jobs=[])

    assert await execution_status_json(db, execution_id=execution.id, tenant="other") is None
    assert await execution_status_json(db, execution_id="nope", tenant=None) is None
    # No tenant (the API without keys) sees every execution; one without jobs has an empty list.
    document = await execution_status_json(db, execution_id=execution.id, tenant=None)
    assert document is not None
    view = ExecutionStatusView.model_validate_json(document)
    assert (view.jobs, view.costUsd, view.completedAt) == ([], 0.0, now)
