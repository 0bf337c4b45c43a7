"""Schemathesis against the live API's OpenAPI schema.

Every operation gets generated requests (schemathesis' examples, coverage and fuzzing phases),
first on the session's open API (`api_url`), then on a second API with API keys, authorised, so
requests reach past the 401. Each response must pass schemathesis' checks: no 5xx, a declared
status code, content type and headers, a body matching the declared schema, invalid data refused
and, on the API with keys, no success without a valid key. A last test checks the same on the
answers about a real execution, which generated ids never find.

The APIs run on the session's event loop (conftest's `serve`). A blocking request sent from that
loop's thread would never be answered, so each one is sent from a worker thread while this
thread runs the loop (`_blocking`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from reelflow.config import Settings
from tests.conftest import keyed_api
from tests.factories import generate_job, plan, submit, wait_for, webhook_path

T = TypeVar("T")

KEY = "fuzz-key-0123456789abcdef"
AUTHORIZED = {"Authorization": f"Bearer {KEY}"}
# Generated requests are cheap (nothing they send is a valid plan, so no workflow starts), but
# the three phases times nine operations times two APIs add up: ~30 fuzzed cases each is plenty.
FUZZ = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
REQUEST_TIMEOUT_S = 30


def _excluded(case: Case) -> list[Any]:
    # `POST /api/execute` declares its body as any JSON: the plan's rules (ids referenced by
    # other jobs, acyclic, per-model params) are beyond JSON Schema and are checked by
    # validate_submission, which tests/test_plan_properties.py covers. So "schema-valid" bodies
    # are rightly refused with a 422, and positive_data_acceptance cannot hold there.
    if case.operation.label == "POST /api/execute":
        return [positive_data_acceptance]
    # A cursor is opaque: only those the API returned are valid, which a schema cannot say.
    if case.operation.label == "GET /api/executions" and "cursor" in (case.query or {}):
        return [positive_data_acceptance]
    return []


def _blocking(loop: asyncio.AbstractEventLoop, func: Callable[..., T], **kwargs: Any) -> T:
    """Run `func` in a thread while `loop`, which serves the APIs, runs in this one."""
    return loop.run_until_complete(asyncio.to_thread(func, **kwargs))


@pytest.fixture(scope="session")
async def session_loop() -> asyncio.AbstractEventLoop:
    """The event loop the session's servers run on."""
    return asyncio.get_running_loop()


@pytest.fixture(autouse=True)
def _nodeid_shim(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32's `from_fixture` renames the running item through `node._nodeid`, which
    # pytest 9 no longer has (`Node._id` replaced it); give it one so the lazy loader runs.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


async def _load_schema(base_url: str) -> BaseSchema:
    return await asyncio.to_thread(
        schemathesis.openapi.from_url, f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT_S
    )


@pytest.fixture(scope="module")
async def open_schema(api_url: str) -> BaseSchema:
    """The open API's schema, as it serves it."""
    return await _load_schema(api_url)


@pytest.fixture(scope="module")
async def secured_url(settings: Settings, api_url: str) -> AsyncIterator[str]:
    """An API with one tenant's key, on the shared worker."""
    async with keyed_api(settings, f"fuzz:{KEY}") as url:
        yield url


@pytest.fixture(scope="module")
async def secured_schema(secured_url: str) -> BaseSchema:
    """The schema of the API with keys, as it serves it."""
    return await _load_schema(secured_url)


open_api = schemathesis.pytest.from_fixture("open_schema")
secured_api = schemathesis.pytest.from_fixture("secured_schema")


@open_api.parametrize()
@FUZZ
def test_open_api_answers_every_generated_request_as_declared(
    case: Case, session_loop: asyncio.AbstractEventLoop
) -> None:
    # Keys are off on this API by configuration (it serves loopback only), so the security its
    # schema declares is not enforced: ignored_auth belongs to the API with keys below.
    _blocking(
        session_loop,
        case.call_and_validate,
        excluded_checks=[ignored_auth, *_excluded(case)],
        timeout=REQUEST_TIMEOUT_S,
    )


@secured_api.parametrize()
@FUZZ
def test_api_with_keys_answers_every_generated_request_as_declared(
    case: Case, session_loop: asyncio.AbstractEventLoop
) -> None:
    # With the key given explicitly, ignored_auth also replays each success without a key and
    # with a wrong one, and insists on a refusal.
    response = _blocking(
        session_loop,
        case.call_and_validate,
        headers=AUTHORIZED,
        excluded_checks=_excluded(case),
        timeout=REQUEST_TIMEOUT_S,
    )
    # The key wins over whatever auth headers schemathesis made up, so nothing stops at the 401.
    webhook = case.operation.path.startswith("/api/webhooks/")  # 401 there: a bad token
    assert response.status_code != 401 or webhook, response.text


async def _validated(
    schema: BaseSchema,
    method: str,
    path: str,
    expected_status: int,
    *,
    headers: dict[str, str] | None = None,
    **parts: Any,
) -> Any:
    """Send one concrete request, check its answer against the schema, return the answer."""
    case = schema[path][method].Case(**parts)
    response = await asyncio.to_thread(
        case.call, headers=headers or AUTHORIZED, timeout=REQUEST_TIMEOUT_S
    )
    await asyncio.to_thread(case.validate_response, response, headers=headers or AUTHORIZED)
    assert response.status_code == expected_status, (method, path, response.text)
    return response


async def test_answers_about_a_real_execution_match_the_schema(
    secured_schema: BaseSchema, secured_url: str, emulator: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=secured_url, headers=AUTHORIZED, timeout=30) as client:
        finished = await submit(client, plan(generate_job("fuzzed")))
        execution_id = finished["executionId"]
        done = await wait_for(client, execution_id)
        assert done["status"] == "completed", done
        await emulator.patch("/_emulator/config", json={"replicate": {"generation_seconds": 30}})
        running = await submit(client, plan(generate_job("slow")))

    status = (
        await _validated(
            secured_schema,
            "GET",
            "/api/status/{execution_id}",
            200,
            path_parameters={"execution_id": execution_id},
        )
    ).json()
    assert status["jobs"][0]["outputs"], status
    first_page = (
        await _validated(secured_schema, "GET", "/api/executions", 200, query={"limit": 1})
    ).json()
    assert first_page["nextCursor"], first_page
    await _validated(
        secured_schema,
        "GET",
        "/api/executions",
        200,
        query={"limit": 1, "cursor": first_page["nextCursor"], "status": "completed"},
    )
    await _validated(
        secured_schema,
        "POST",
        "/api/executions/{execution_id}/cancel",
        409,
        path_parameters={"execution_id": execution_id},
    )
    await _validated(
        secured_schema,
        "POST",
        "/api/executions/{execution_id}/cancel",
        202,
        path_parameters={"execution_id": running["executionId"]},
    )
    key = status["jobs"][0]["outputs"][0]["url"].split("/files/", 1)[1]
    for method in ("GET", "HEAD"):
        await _validated(secured_schema, method, "/files/{key}", 200, path_parameters={"key": key})
    await _validated(
        secured_schema,
        "GET",
        "/api/status/{execution_id}",
        401,
        headers={"X-API-Key": "wrong"},
        path_parameters={"execution_id": execution_id},
    )
    job_record_id = status["jobs"][0]["jobRecordId"]
    for record_id, expected in (("no-such-job", 404), (job_record_id, 401)):
        # A valid token for an unknown job; then a right token but no provider signature.
        token = webhook_path(record_id).split("token=", 1)[1]
        await _validated(
            secured_schema,
            "POST",
            "/api/webhooks/job/{job_record_id}",
            expected,
            path_parameters={"job_record_id": record_id},
            query={"token": token},
        )


def _body(job_input: str = '"https://a.test/clip.mp4"', metadata: str = "{}") -> str:
    job = '{"id": "a", "operation": "pipeline:concat", "params": {"inputs": [' + job_input + "]}}"
    return '{"executionPlan": {"jobs": [' + job + ']}, "metadata": ' + metadata + "}"


@pytest.mark.parametrize(
    "body",
    [
        # Python's JSON parser takes NaN and Infinity; the database's JSON does not.
        _body(metadata='{"score": NaN}'),
        _body(metadata='{"score": -Infinity}'),
        # Deep enough to parse, and (before MAX_DEPTH) to exhaust the validator's recursion.
        _body(job_input='{"a": ' * 600 + '"leaf"' + "}" * 600),
        # Too deep for the JSON parser itself, and a number too long for Python's int().
        "[" * 5000 + "]" * 5000,
        _body(metadata='{"n": 1' + "0" * 5000 + "}"),
    ],
    ids=["nan", "infinity", "deep-params", "deeper-than-the-parser", "long-number"],
)
async def test_bodies_that_python_parses_but_json_cannot_hold_are_refused_as_declared(
    open_schema: BaseSchema, api: httpx.AsyncClient, body: str
) -> None:
    response = await api.post(
        "/api/execute", content=body, headers={"Content-Type": "application/json"}
    )
    case = open_schema["/api/execute"]["POST"].Case(body={})
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    await asyncio.to_thread(case.validate_response, response, checks=checks)
    assert response.status_code in (400, 422), response.text


def _cursor(*parts: object) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("2024-01-01T00:00:00", "naive"),
        _cursor("9999-12-31T23:59:59.999999+00:00", "far"),
        _cursor("0001-01-01T00:00:00-23:59", "before-year-one-in-utc"),
        _cursor("2024-01-01T00:00:00+00:00", "x" * 200),
        _cursor("2024-01-01", 7),
        _cursor(["not", "a", "date"], "x"),
        _cursor("2024-01-01T00:00:00+00:00"),
        "%%%",
    ],
)
async def test_cursors_the_api_never_returned_are_answered_as_declared(
    open_schema: BaseSchema, api: httpx.AsyncClient, cursor: str
) -> None:
    # Well-formed base64 JSON that schemathesis would not think to make.
    response = await api.get("/api/executions", params={"cursor": cursor})
    case = open_schema["/api/executions"]["GET"].Case(query={"cursor": cursor})
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    await asyncio.to_thread(case.validate_response, response, checks=checks)
    assert response.status_code in (200, 422), response.text
