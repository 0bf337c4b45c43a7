"""Whole-system tests: HTTP API, real Temporal, PostgreSQL, the emulator and the worker process."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from reelflow.media import probe
from tests.conftest import WorkerProcess
from tests.factories import generate_job, plan, submit, wait_for, webhook_path


async def _download_and_probe(url: str) -> Any:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(response.content)
        file.flush()
        return probe(file.name)


def _webhook_url(api: httpx.AsyncClient, job_record_id: str) -> str:
    return str(api.base_url.join(webhook_path(job_record_id)))


async def _stats(emulator: httpx.AsyncClient) -> dict[str, Any]:
    stats: dict[str, Any] = (await emulator.get("/_emulator/stats")).json()
    return stats


async def test_webhook_job_completes_with_stored_mp4(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    accepted = await submit(api, plan(generate_job("sunset")))
    assert accepted["status"] == "queued"
    assert accepted["statusUrl"] == f"/api/status/{accepted['executionId']}"
    [job] = accepted["jobs"]

    status = await wait_for(api, accepted["executionId"])

    assert status["status"] == "completed", status
    [done] = status["jobs"]
    assert done["jobRecordId"] == job["jobRecordId"]
    assert done["status"] == "completed"
    assert done["waitingStrategy"] == "webhook"
    assert done["providerJobStatus"] == "succeeded"
    assert done["providerJobId"]
    # The safety-net poll is a minute away: the webhook alone finished this job.
    assert done["pollAttempts"] == 0
    assert done["progress"] == 1.0
    [output] = done["outputs"]
    assert output["contentType"] == "video/mp4"
    assert output["bytes"] > 0 and len(output["sha256"]) == 64
    info = await _download_and_probe(output["url"])
    assert info.video_streams == 1
    assert info.duration_s > 4
    stats = await _stats(emulator)
    assert stats["created_per_webhook"][_webhook_url(api, job["jobRecordId"])] == 1


async def test_polling_job_reports_polls_while_running_and_completes(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"all": {"generation_seconds": 3}})
    accepted = await submit(api, plan(generate_job("polled", waitingStrategy="polling")))

    running = await wait_for(
        api,
        accepted["executionId"],
        lambda s: s["jobs"][0]["pollAttempts"] >= 1 and s["jobs"][0]["status"] == "processing",
    )
    [job] = running["jobs"]
    assert running["status"] == "running"
    assert job["waitingStrategy"] == "polling"
    assert job["providerJobId"]
    assert job["providerJobStatus"] in {"starting", "processing"}
    assert job["nextPollAt"] is not None

    status = await wait_for(api, accepted["executionId"])
    [job] = status["jobs"]
    assert status["status"] == "completed", status
    assert job["pollAttempts"] >= 2
    assert job["nextPollAt"] is None
    assert (await _download_and_probe(job["outputs"][0]["url"])).video_streams == 1


async def test_provider_failure_fails_job_with_providers_message(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch(
        "/_emulator/config",
        json={"all": {"failure_rate": 1.0, "failure_message": "NSFW content detected"}},
    )
    accepted = await submit(api, plan(generate_job("doomed")))

    status = await wait_for(api, accepted["executionId"])

    assert status["status"] == "failed"
    [job] = status["jobs"]
    assert job["status"] == "failed"
    assert job["providerJobStatus"] == "failed"
    assert job["error"] == "NSFW content detected"
    assert job["outputs"] == []
    assert "NSFW content detected" in status["error"]


async def _webhook_secret(emulator: httpx.AsyncClient) -> str:
    response = await emulator.get(
        "/replicate/v1/webhooks/default/secret", headers={"Authorization": "Bearer r8_emulator"}
    )
    secret: str = response.json()["key"]
    return secret


def _signed(
    secret: str, body: dict[str, Any], *, at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(body)
    timestamp = datetime.fromtimestamp(at or time.time(), tz=UTC)
    msg_id = f"msg_{time.monotonic_ns()}"
    signature = Webhook(secret).sign(msg_id, timestamp, payload)
    return payload.encode(), {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def _prediction(job: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "id": job["providerJobId"],
        "model": "bytedance/seedance-1-lite",
        "status": "succeeded",
        "output": "http://127.0.0.1:1/forged.mp4",
        "error": None,
        "logs": "",
        **changes,
    }


async def test_webhook_with_bad_or_stale_signature_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"all": {"generation_seconds": 30}})
    accepted = await submit(api, plan(generate_job("target")))
    running = await wait_for(
        api, accepted["executionId"], lambda s: bool(s["jobs"][0]["providerJobId"])
    )
    job = running["jobs"][0]
    url = webhook_path(job["jobRecordId"])
    secret = await _webhook_secret(emulator)

    body, headers = _signed(secret, _prediction(job))
    tampered = body.replace(b"succeeded", b"failed\x20\x20\x20")
    stale_body, stale_headers = _signed(secret, _prediction(job), at=time.time() - 600)
    forged_body, forged_headers = _signed(
        "whsec_" + base64.b64encode(b"not the emulator's key, 32 bytes").decode(), _prediction(job)
    )
    attempts = [
        (tampered, headers),
        (stale_body, stale_headers),
        (forged_body, forged_headers),
        (body, {"content-type": "application/json"}),
    ]
    for attempt_body, attempt_headers in attempts:
        response = await api.post(url, content=attempt_body, headers=attempt_headers)
        assert response.status_code == 401, response.text

    after = (await api.get(f"/api/status/{accepted['executionId']}")).json()
    assert after["jobs"][0]["status"] in {"queued", "processing"}
    assert after["jobs"][0]["outputs"] == []
    assert after["status"] == "running"
    await api.post(f"/api/executions/{accepted['executionId']}/cancel")


async def test_webhook_for_unknown_job_is_not_found(api: httpx.AsyncClient) -> None:
    response = await api.post(webhook_path("00000000-0000-0000-0000-000000000000"), content=b"{}")
    assert response.status_code == 404


async def test_duplicate_webhook_is_harmless(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    accepted = await submit(api, plan(generate_job("twice")))
    status = await wait_for(api, accepted["executionId"])
    assert status["status"] == "completed"
    job = status["jobs"][0]
    secret = await _webhook_secret(emulator)
    prediction = (
        await emulator.get(
            f"/replicate/v1/predictions/{job['providerJobId']}",
            headers={"Authorization": "Bearer r8_emulator"},
        )
    ).json()

    for _ in range(2):
        body, headers = _signed(secret, prediction)
        response = await api.post(webhook_path(job["jobRecordId"]), content=body, headers=headers)
        assert response.status_code == 200, response.text

    after = (await api.get(f"/api/status/{accepted['executionId']}")).json()
    assert after["jobs"][0]["outputs"] == job["outputs"]
    assert after["jobs"][0]["completedAt"] == job["completedAt"]
    assert after["status"] == "completed"


async def test_worker_killed_mid_job_completes_it_without_a_second_provider_job(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient, worker: WorkerProcess
) -> None:
    await emulator.patch("/_emulator/config", json={"all": {"generation_seconds": 4}})
    accepted = await submit(api, plan(generate_job("survivor")))
    running = await wait_for(
        api, accepted["executionId"], lambda s: bool(s["jobs"][0]["providerJobId"])
    )

    worker.kill()
    worker.start()

    status = await wait_for(api, accepted["executionId"], timeout_s=90)
    assert status["status"] == "completed", status
    [job] = status["jobs"]
    assert job["providerJobId"] == running["jobs"][0]["providerJobId"]
    stats = await _stats(emulator)
    assert stats["created_per_webhook"][_webhook_url(api, job["jobRecordId"])] == 1


@pytest.mark.parametrize("strategy", ["webhook", "polling"])
async def test_worker_killed_inside_the_start_activity_leaves_one_provider_job(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient, worker: WorkerProcess, strategy: str
) -> None:
    # Replicate creates the prediction at once but answers 3 s later: the worker dies in
    # between, knowing nothing of the job it just paid for.
    await emulator.patch(
        "/_emulator/config",
        json={"replicate": {"create_response_delay_seconds": 3, "generation_seconds": 2}},
    )
    created_before = (await _stats(emulator))["created"]
    accepted = await submit(api, plan(generate_job("adopted", waitingStrategy=strategy)))
    for _ in range(100):
        if (await _stats(emulator))["created"] > created_before:
            break
        await asyncio.sleep(0.05)

    worker.kill()
    worker.start()

    status = await wait_for(api, accepted["executionId"], timeout_s=90)
    assert status["status"] == "completed", status
    [job] = status["jobs"]
    stats = await _stats(emulator)
    assert stats["created"] - created_before == 1
    assert stats["created_per_webhook"][_webhook_url(api, job["jobRecordId"])] == 1
