"""`GET /api/status` as one query: PostgreSQL builds the whole JSON document.

The status of an execution is the API's most read answer (clients and the run viewer poll it).
Loading 50 ORM rows with their JSON columns and validating them twice through pydantic cost
about 14 ms of API CPU per read; built by the database from the columns it needs and sent on
as text, the read costs the API a fraction of a millisecond. The document has the shape of
`api.schemas.ExecutionStatusView` (same keys, same order); timestamps are RFC 3339 in UTC with
microseconds.
"""

from __future__ import annotations

from reelflow.db.engine import Database

__all__ = ["execution_status_json"]


def _time(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


_OUTPUTS = """coalesce(
    (SELECT json_agg(json_build_object(
        'url', o->'url', 'contentType', o->'content_type', 'bytes', o->'bytes',
        'sha256', o->'sha256', 'durationSeconds', o->'duration_s', 'width', o->'width',
        'height', o->'height', 'fps', o->'fps') ORDER BY n)
     FROM jsonb_array_elements(j.outputs) WITH ORDINALITY AS stored(o, n)),
    '[]'::json)"""

_JOB = f"""json_build_object(
    'id', j.job_id, 'jobRecordId', j.id, 'operation', j.operation,
    'dependsOn', j.depends_on, 'modelId', j.model_id, 'provider', j.provider,
    'status', j.status, 'waitingStrategy', j.waiting_strategy,
    'providerJobId', j.provider_job_id, 'providerJobStatus', j.provider_job_status,
    'pollAttempts', j.poll_attempts, 'nextPollAt', {_time("j.next_poll_at")},
    'progress', j.progress, 'computeSeconds', j.compute_seconds,
    'costUsd', j.cost_usd::float8, 'outputs', {_OUTPUTS}, 'error', j.error,
    'startedAt', {_time("j.started_at")}, 'completedAt', {_time("j.completed_at")})"""

_QUERY = f"""
SELECT json_build_object(
    'executionId', e.id, 'status', e.status, 'metadata', e.metadata, 'error', e.error,
    'createdAt', {_time("e.created_at")}, 'updatedAt', {_time("e.updated_at")},
    'completedAt', {_time("e.completed_at")},
    'costUsd', coalesce(jobs.cost, 0)::float8,
    'jobs', coalesce(jobs.list, '[]'::json))::text
FROM executions e
CROSS JOIN LATERAL (
    SELECT sum(j.cost_usd) AS cost, json_agg({_JOB} ORDER BY j.position) AS list
    FROM execution_jobs j
    WHERE j.execution_id = e.id
) AS jobs
WHERE e.id = $1 AND ($2::text IS NULL OR e.tenant = $2)
"""


async def execution_status_json(
    db: Database, *, execution_id: str, tenant: str | None
) -> str | None:
    """The status document of an execution, or None if there is none (for this tenant)."""
    document = await db.fetchval(_QUERY, execution_id, tenant)
    return None if document is None else str(document)
