"""Authentication, tenant isolation, webhook hardening and orphan cancellation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from reelflow.config import Settings
from tests.conftest import ApiCommand, keyed_api
from tests.factories import (
    ALICE_KEY,
    BOB_KEY,
    generate_job,
    plan,
    submit,
    wait_for,
    webhook_path,
)

ALICE = ALICE_KEY
BOB = BOB_KEY


@pytest.fixture(scope="module")
async def secured_url(settings: Settings, api_url: str) -> AsyncIterator[str]:
    """An API with two tenants' keys, on the shared worker."""
    async with keyed_api(settings, f"alice:{ALICE},bob:{BOB}") as url:
        yield url


@pytest.fixture
async def alice(secured_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=secured_url, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
async def bob(secured_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # Bob uses the other header form.
    async with httpx.AsyncClient(
        base_url=secured_url, headers={"X-API-Key": BOB}, timeout=30
    ) as client:
        yield client


@pytest.fixture
async def anonymous(secured_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=secured_url, timeout=30) as client:
        yield client


def _routes(execution_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", "/api/execute", {"json": plan(generate_job("x"))}),
        ("GET", f"/api/status/{execution_id}", {}),
        ("GET", "/api/executions", {}),
        ("POST", f"/api/executions/{execution_id}/cancel", {}),
        ("GET", "/api/models", {}),
    ]


async def test_every_api_route_needs_a_valid_key(
    anonymous: httpx.AsyncClient, alice: httpx.AsyncClient, secured_url: str
) -> None:
    accepted = await submit(alice, plan(generate_job("mine")))
    async with httpx.AsyncClient(
        base_url=secured_url, headers={"Authorization": "Bearer not-a-key-0123456789"}
    ) as wrong:
        for method, path, extra in _routes(accepted["executionId"]):
            for client in (anonymous, wrong):
                response = await client.request(method, path, **extra)
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
    assert (await anonymous.get("/healthz")).status_code == 200


async def test_another_tenants_execution_is_not_found_on_every_route(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    accepted = await submit(alice, plan(generate_job("private")))
    execution_id = accepted["executionId"]
    done = await wait_for(alice, execution_id)
    output_url = done["jobs"][0]["outputs"][0]["url"]
    file_path = "/files/" + output_url.split("/files/", 1)[1]

    assert (await bob.get(f"/api/status/{execution_id}")).status_code == 404
    assert (await bob.post(f"/api/executions/{execution_id}/cancel")).status_code == 404
    assert (await bob.get(file_path)).status_code == 404
    listed = (await bob.get("/api/executions", params={"limit": 200})).json()["executions"]
    assert execution_id not in {e["executionId"] for e in listed}
    assert (await alice.get(file_path)).status_code == 200
    mine = (await alice.get("/api/executions", params={"limit": 200})).json()["executions"]
    assert execution_id in {e["executionId"] for e in mine}


async def test_idempotency_keys_are_per_tenant(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "shared-key-name"}
    body = plan(generate_job("same"))
    first = await alice.post("/api/execute", json=body, headers=headers)
    second = await bob.post("/api/execute", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["executionId"] != second.json()["executionId"]


async def test_open_api_refuses_to_serve_beyond_loopback(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"api_host": "0.0.0.0"}))
    with pytest.raises(RuntimeError, match="without API keys"):
        async with app.router.lifespan_context(app):
            pass


async def test_webhooks_without_or_with_a_wrong_token_are_refused_and_change_nothing(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"replicate": {"generation_seconds": 30}})
    accepted = await submit(api, plan(generate_job("guarded")))
    running = await wait_for(
        api, accepted["executionId"], lambda s: bool(s["jobs"][0]["providerJobId"])
    )
    job_record_id = running["jobs"][0]["jobRecordId"]
    other_token = webhook_path("some-other-job").split("token=")[1]
    for path in (
        f"/api/webhooks/job/{job_record_id}",
        f"/api/webhooks/job/{job_record_id}?token=",
        f"/api/webhooks/job/{job_record_id}?token={other_token}",
    ):
        response = await api.post(path, content=b'{"status": "succeeded"}')
        assert response.status_code == 401, path
    after = (await api.get(f"/api/status/{accepted['executionId']}")).json()
    assert after["jobs"][0]["status"] in {"queued", "processing"}
    await api.post(f"/api/executions/{accepted['executionId']}/cancel")


async def test_webhook_tokens_stay_out_of_the_api_access_log(api_command: ApiCommand) -> None:
    job_record_id = str(uuid.uuid4())
    path = webhook_path(job_record_id)
    token = path.partition("token=")[2]
    async with httpx.AsyncClient(base_url=api_command.url) as client:
        response = await client.post(path, json={"id": "p1", "status": "succeeded"})
    assert response.status_code < 500, response.text

    logged = f"/api/webhooks/job/{job_record_id}?token=redacted"
    for _ in range(100):
        if logged in api_command.log():
            break
        await asyncio.sleep(0.05)
    assert logged in api_command.log()
    assert token not in api_command.log()


async def test_webhook_of_an_untracked_provider_job_is_accepted_and_the_job_cancelled(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"replicate": {"generation_seconds": 20}})
    accepted = await submit(api, plan(generate_job("tracked")))
    running = await wait_for(
        api, accepted["executionId"], lambda s: bool(s["jobs"][0]["providerJobId"])
    )
    job = running["jobs"][0]
    auth = {"Authorization": "Bearer r8_emulator"}
    # A second prediction for the same job record: what a start retried after a crash makes.
    orphan = (
        await emulator.post(
            "/replicate/v1/models/bytedance/seedance-1-lite/predictions",
            headers=auth,
            json={
                "input": {"prompt": "orphan"},
                "webhook": str(api.base_url.join(webhook_path(job["jobRecordId"]))),
                "webhook_events_filter": ["start", "completed"],
            },
        )
    ).json()

    async def orphan_status() -> str:
        prediction = await emulator.get(f"/replicate/v1/predictions/{orphan['id']}", headers=auth)
        status: str = prediction.json()["status"]
        return status

    for _ in range(100):
        if await orphan_status() == "canceled":
            break
        await asyncio.sleep(0.1)
    assert await orphan_status() == "canceled"
    still = (await api.get(f"/api/status/{accepted['executionId']}")).json()["jobs"][0]
    assert still["providerJobId"] == job["providerJobId"]
    assert still["status"] in {"queued", "processing"}
    await api.post(f"/api/executions/{accepted['executionId']}/cancel")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/clip.mp4", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("https://evil.example/clip.mp4?sig=secret", "evil.example"),
    ],
)
async def test_media_inputs_outside_the_allowlist_fail_the_job_clearly(
    api: httpx.AsyncClient, url: str, reason: str
) -> None:
    accepted = await submit(
        api,
        plan({"id": "peek", "operation": "pipeline:thumbnail", "params": {"input": url}}),
    )

    status = await wait_for(api, accepted["executionId"])

    [job] = status["jobs"]
    assert job["status"] == "failed"
    assert "download refused" in job["error"] and reason in job["error"]
    # Presigned signatures never leak into errors.
    assert "secret" not in job["error"]
