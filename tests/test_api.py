"""The HTTP contract: validation errors, lookups, models, probes, idempotent submission."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.conftest import ApiCommand
from tests.factories import generate_job, plan, submit, wait_for


async def test_invalid_plan_gets_422_listing_every_problem(api: httpx.AsyncClient) -> None:
    body = plan(generate_job("a", prompt=""), generate_job("a", modelId="nope/nope"))
    response = await api.post("/api/execute", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["detail"] == "invalid execution plan"
    assert {error["path"] for error in answer["errors"]} == {
        "executionPlan.jobs[0].params.prompt",
        "executionPlan.jobs[1].id",
        "executionPlan.jobs[1].params.modelId",
    }


async def test_malformed_json_gets_422_not_500(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/execute", content=b'{"executionPlan": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"].startswith("body")


async def test_status_of_unknown_execution_is_not_found(api: httpx.AsyncClient) -> None:
    response = await api.get(f"/api/status/{uuid.uuid4()}")
    assert response.status_code == 404


async def test_models_lists_registry_with_schemas(api: httpx.AsyncClient) -> None:
    models = {m["id"]: m for m in (await api.get("/api/models")).json()["models"]}
    seedance = models["bytedance/seedance-1-pro"]
    assert seedance["provider"] == "replicate"
    assert seedance["capabilities"] == ["polling", "webhook"]
    assert seedance["available"] is True
    assert "prompt" in seedance["paramsSchema"]["required"]
    assert "bytedance/seedance-1-lite" in models


async def test_probes_report_healthy(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"database": "ok", "temporal": "ok", "storage": "ok"}


async def test_same_idempotency_key_returns_same_execution_even_concurrently(
    api: httpx.AsyncClient,
) -> None:
    key = f"key-{uuid.uuid4()}"
    body = plan(generate_job("once"))
    responses = await asyncio.gather(
        *(api.post("/api/execute", json=body, headers={"Idempotency-Key": key}) for _ in range(4))
    )
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["executionId"] for r in responses}) == 1
    assert len({r.json()["jobs"][0]["jobRecordId"] for r in responses}) == 1
    await wait_for(api, responses[0].json()["executionId"])


async def test_cancelling_a_finished_execution_is_a_conflict(api: httpx.AsyncClient) -> None:
    accepted = await submit(api, plan(generate_job("quick")))
    await wait_for(api, accepted["executionId"])
    response = await api.post(f"/api/executions/{accepted['executionId']}/cancel")
    assert response.status_code == 409
    assert "already completed" in response.json()["detail"]
    assert (await api.post(f"/api/executions/{uuid.uuid4()}/cancel")).status_code == 404


async def test_the_api_keeps_an_idle_connection_past_httpxs_pool_expiry(
    api_command: ApiCommand,
) -> None:
    # httpx pools idle connections for 5 s. A server that closes them at 5 s too (uvicorn's
    # default) races every reuse near that age, and the client gets a reset (httpx.ReadError).
    limits = httpx.Limits(max_connections=1, keepalive_expiry=60)
    addresses = []
    async with httpx.AsyncClient(base_url=api_command.url, limits=limits) as client:
        for pause_s in (0, 6):
            await asyncio.sleep(pause_s)
            response = await client.get("/healthz")
            assert response.status_code == 200
            addresses.append(response.extensions["network_stream"].get_extra_info("client_addr"))

    assert addresses[1] == addresses[0], "the API closed the idle connection"
