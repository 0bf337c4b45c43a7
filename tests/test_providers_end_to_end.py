"""Every provider through the HTTP API: each waiting strategy, mixed plans, hostile webhooks,
and webhooks dropped, duplicated and delayed by the emulator."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.app import create_app
from reelflow.config import Settings
from tests.conftest import free_port, serve, stop
from tests.factories import generate_job, plan, submit, wait_for, webhook_path

SEEDANCE = "bytedance/seedance-1-lite"
HAILUO = "fal-ai/minimax/hailuo-02/standard/text-to-video"
VEO = "veo-3.0-fast-generate-001"


def job_for(model_id: str, job_id: str, **params: Any) -> dict[str, Any]:
    job = generate_job(job_id, modelId=model_id, **params)
    # Each model has its own durations; let its default apply.
    del job["params"]["durationSeconds"]
    return job


@pytest.mark.parametrize(
    ("model_id", "strategy", "provider_status"),
    [
        (SEEDANCE, "webhook", {"succeeded"}),
        (SEEDANCE, "polling", {"succeeded"}),
        (HAILUO, "webhook", {"OK"}),
        # A polling job's webhook URL still identifies it at fal, whose webhook may come first.
        (HAILUO, "polling", {"COMPLETED", "OK"}),
        (VEO, "polling", {"succeeded"}),
    ],
)
async def test_each_provider_completes_with_each_strategy_it_offers(
    api: httpx.AsyncClient, model_id: str, strategy: str, provider_status: set[str]
) -> None:
    accepted = await submit(api, plan(job_for(model_id, "clip", waitingStrategy=strategy)))

    status = await wait_for(api, accepted["executionId"], timeout_s=90)

    assert status["status"] == "completed", status
    [job] = status["jobs"]
    assert job["waitingStrategy"] == strategy
    assert job["providerJobStatus"] in provider_status
    if strategy == "webhook":
        assert job["pollAttempts"] == 0
    else:
        assert job["pollAttempts"] >= 1
    [output] = job["outputs"]
    assert output["contentType"] == "video/mp4" and output["bytes"] > 0
    assert job["costUsd"] > 0
    # fal's webhook carries no metrics (its polled status does), and a polling job's webhook
    # may still arrive first.
    if model_id != HAILUO:
        assert job["computeSeconds"] is not None and job["computeSeconds"] > 0
    assert status["costUsd"] == pytest.approx(job["costUsd"])


async def test_veo_refuses_a_webhook_strategy(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/execute", json=plan(job_for(VEO, "clip", waitingStrategy="webhook"))
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "path": "executionPlan.jobs[0].params.waitingStrategy",
            "message": f"model '{VEO}' does not support 'webhook'",
        }
    ]


async def test_plan_mixing_three_providers_runs_them_in_parallel(api: httpx.AsyncClient) -> None:
    accepted = await submit(
        api, plan(job_for(SEEDANCE, "replicate"), job_for(HAILUO, "fal"), job_for(VEO, "veo"))
    )

    status = await wait_for(api, accepted["executionId"], timeout_s=90)

    assert status["status"] == "completed", status
    jobs = status["jobs"]
    assert {job["provider"] for job in jobs} == {"replicate", "fal", "veo"}
    started = [datetime.fromisoformat(job["startedAt"]) for job in jobs]
    finished = [datetime.fromisoformat(job["completedAt"]) for job in jobs]
    # Every job started before any finished: they ran side by side.
    assert max(started) < min(finished)
    assert status["costUsd"] == pytest.approx(sum(job["costUsd"] for job in jobs))


def _fal_webhook(
    key: Ed25519PrivateKey, body: dict[str, Any], *, request_id: str, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    timestamp = str(int(at or time.time()))
    message = "\n".join([request_id, "emulator-user", timestamp, hashlib.sha256(raw).hexdigest()])
    return raw, {
        "content-type": "application/json",
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": "emulator-user",
        "x-fal-webhook-timestamp": timestamp,
        "x-fal-webhook-signature": key.sign(message.encode()).hex(),
    }


async def test_fal_webhooks_with_wrong_key_changed_body_or_old_timestamp_are_refused(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"fal": {"generation_seconds": 30}})
    accepted = await submit(api, plan(job_for(HAILUO, "target")))
    running = await wait_for(
        api, accepted["executionId"], lambda s: bool(s["jobs"][0]["providerJobId"])
    )
    job = running["jobs"][0]
    request_id = job["providerJobId"]
    config = (await emulator.get("/_emulator/config")).json()
    real_key = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(config["fal_webhook_signing_key"])
    )
    forged = {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "payload": {"video": {"url": "http://127.0.0.1:1/forged.mp4"}},
    }
    wrong_key = _fal_webhook(Ed25519PrivateKey.generate(), forged, request_id=request_id)
    body, headers = _fal_webhook(real_key, forged, request_id=request_id)
    changed = (body.replace(b"forged", b"swiped"), headers)
    old = _fal_webhook(real_key, forged, request_id=request_id, at=time.time() - 600)
    url = webhook_path(job["jobRecordId"])

    for attempt_body, attempt_headers in (wrong_key, changed, old):
        response = await api.post(url, content=attempt_body, headers=attempt_headers)
        assert response.status_code == 401, response.text

    after = (await api.get(f"/api/status/{accepted['executionId']}")).json()
    assert after["jobs"][0]["status"] in {"queued", "processing"}
    assert after["jobs"][0]["outputs"] == []
    await api.post(f"/api/executions/{accepted['executionId']}/cancel")


@pytest.fixture
async def impatient_api(settings: Settings, api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A second API on the same worker whose jobs poll every 2 s as a webhook safety net."""
    port = free_port()
    server, task = await serve(
        create_app(
            settings.model_copy(
                update={
                    "api_port": port,
                    "api_base_url": f"http://127.0.0.1:{port}",
                    "webhook_safety_poll_s": 2.0,
                }
            )
        ),
        port,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    await stop(server, task)


async def test_fifty_jobs_complete_once_each_while_webhooks_are_dropped_duplicated_delayed(
    impatient_api: httpx.AsyncClient, emulator: httpx.AsyncClient, settings: Settings
) -> None:
    await emulator.patch(
        "/_emulator/config",
        json={
            "all": {
                "generation_seconds": 1.0,
                "webhook_drop_rate": 0.5,
                "webhook_duplicate_rate": 0.3,
                "webhook_delay_seconds": 1.5,
            }
        },
    )
    before = (await emulator.get("/_emulator/stats")).json()
    models = [SEEDANCE, HAILUO]
    accepted = await asyncio.gather(
        *(submit(impatient_api, plan(job_for(models[i % 2], f"clip{i}"))) for i in range(50))
    )

    statuses = await asyncio.gather(
        *(wait_for(impatient_api, a["executionId"], timeout_s=120) for a in accepted)
    )

    assert [s["status"] for s in statuses] == ["completed"] * 50
    after = (await emulator.get("/_emulator/stats")).json()
    for status in statuses:
        [job] = status["jobs"]
        assert job["waitingStrategy"] == "webhook"
        webhook = str(impatient_api.base_url.join(webhook_path(job["jobRecordId"])))
        assert after["created_per_webhook"][webhook] == 1, job
        assert len(job["outputs"]) == 1
        stored = list((settings.files_dir / "executions" / status["executionId"]).rglob("*"))
        assert [path.name for path in stored if path.is_file()] == ["output-0.mp4"]
    dropped = sum(
        after[p]["webhooks_dropped"] - before[p]["webhooks_dropped"] for p in ("replicate", "fal")
    )
    duplicated = sum(
        after[p]["webhooks_duplicated"] - before[p]["webhooks_duplicated"]
        for p in ("replicate", "fal")
    )
    assert dropped > 0 and duplicated > 0
