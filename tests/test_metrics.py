"""Metrics, tracing and search attributes, through the real system: the API's `GET /metrics`, the
worker's metrics port (reelflow's metrics and the Temporal SDK's), spans reaching an OTLP
collector, and visibility queries on the search attributes the workflows carry.

The API and the worker serve the whole session's counts, so each test compares a scrape taken
before what it does with one taken after.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from standardwebhooks import Webhook
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from reelflow.config import Settings
from reelflow.temporal import execution_workflow_id, job_workflow_id
from tests.conftest import ROOT, WorkerProcess, free_port, serve, stop
from tests.factories import generate_job, plan, submit, wait_for, webhook_path
from workflows.execution import EXECUTION_ID, MODEL_ID, PROVIDER, TENANT

MODEL = "bytedance/seedance-1-lite"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is absent (a labelled counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` that carry (at least) these labels."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


async def scrape(url: str, *, timeout_s: float = 30) -> Samples:
    """Scrape `url`, waiting for it to answer (the worker may still be starting)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            try:
                response = await client.get(url)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def worker_metrics_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"


async def api_metrics(api: httpx.AsyncClient) -> Samples:
    return await scrape(f"{api.base_url}/metrics")


def signed(secret: str, body: dict[str, Any], msg_id: str) -> tuple[bytes, dict[str, str]]:
    """A Replicate (Standard Webhooks) delivery of `body`, signed with `secret`."""
    payload = json.dumps(body)
    timestamp = datetime.now(UTC)
    return payload.encode(), {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, timestamp, payload),
        "content-type": "application/json",
    }


async def test_api_metrics_count_webhook_deliveries_by_result(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient, worker: WorkerProcess
) -> None:
    before = await api_metrics(api)
    accepted = await submit(api, plan(generate_job("hooked", waitingStrategy="webhook")))
    status = await wait_for(api, accepted["executionId"])
    assert status["status"] == "completed", status
    [job] = status["jobs"]
    done = await api_metrics(api)
    # The emulator delivered at least the final webhook, which completed the job.
    assert value(done, "reelflow_webhook_deliveries_total", result="accepted") > value(
        before, "reelflow_webhook_deliveries_total", result="accepted"
    )

    path = webhook_path(job["jobRecordId"])
    bad_token = await api.post(path.replace("token=", "token=x"), content=b"{}")
    assert bad_token.status_code == 401
    unknown = await api.post(webhook_path("no-such-job"), content=b"{}")
    assert unknown.status_code == 404
    unsigned = await api.post(path, content=b"{}")
    assert unsigned.status_code == 401
    secret = (
        await emulator.get(
            "/replicate/v1/webhooks/default/secret",
            headers={"Authorization": "Bearer r8_emulator"},
        )
    ).json()["key"]
    prediction = (
        await emulator.get(
            f"/replicate/v1/predictions/{job['providerJobId']}",
            headers={"Authorization": "Bearer r8_emulator"},
        )
    ).json()
    msg_id = f"msg_metrics_{time.monotonic_ns()}"
    for _ in range(2):
        body, headers = signed(secret, prediction, msg_id)
        response = await api.post(path, content=body, headers=headers)
        assert response.status_code == 200, response.text

    after = await api_metrics(api)
    expected = {
        "accepted": 1,
        "duplicate": 1,
        "bad_token": 1,
        "unknown": 1,
        "bad_signature": 1,
        "untracked": 0,
        "error": 0,
    }
    counted = {
        result: value(after, "reelflow_webhook_deliveries_total", result=result)
        - value(done, "reelflow_webhook_deliveries_total", result=result)
        for result in expected
    }
    assert counted == expected


async def test_worker_metrics_show_jobs_polls_bytes_cost_and_temporal_sdk_metrics(
    api: httpx.AsyncClient, settings: Settings, worker: WorkerProcess
) -> None:
    url = worker_metrics_url(settings)
    before = await scrape(url)
    accepted = await submit(api, plan(generate_job("polled", waitingStrategy="polling")))
    status = await wait_for(api, accepted["executionId"])
    assert status["status"] == "completed", status
    [job] = status["jobs"]
    after = await scrape(url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    replicate = {"provider": "replicate"}
    model = {**replicate, "model": MODEL}
    assert delta("reelflow_jobs_started_total", **model) == 1
    assert delta("reelflow_jobs_completed_total", **model) == 1
    assert delta("reelflow_jobs_failed_total", **model) == 0
    assert job["pollAttempts"] >= 1
    assert delta("reelflow_polls_total", **replicate) == job["pollAttempts"]
    stored_bytes = sum(output["bytes"] for output in job["outputs"])
    assert stored_bytes > 0
    assert delta("reelflow_rehosted_bytes_total", **replicate) == stored_bytes
    assert job["costUsd"] and job["costUsd"] > 0
    assert delta("reelflow_estimated_cost_usd_total", **model) == pytest.approx(job["costUsd"])
    assert delta("reelflow_provider_to_stored_seconds_count", **replicate) == 1
    # The Temporal SDK's own metrics, on the same port.
    completed = {"workflow_type": "ExecutionWorkflow", "task_queue": settings.task_queue}
    assert (
        total(after, "temporal_workflow_completed_total", **completed)
        - total(before, "temporal_workflow_completed_total", **completed)
        >= 1
    )
    assert total(after, "temporal_activity_execution_latency_count") > 0


async def test_search_attributes_find_an_execution_and_its_jobs(
    api: httpx.AsyncClient, temporal_env: WorkflowEnvironment, worker: WorkerProcess
) -> None:
    accepted = await submit(
        api,
        plan(
            generate_job("first", waitingStrategy="webhook"),
            {**generate_job("second"), "dependsOn": ["first"]},
        ),
    )
    execution_id = accepted["executionId"]
    status = await wait_for(api, execution_id)
    assert status["status"] == "completed", status

    expected = {execution_workflow_id(execution_id)} | {
        job_workflow_id(job["jobRecordId"]) for job in status["jobs"]
    }
    deadline = time.monotonic() + 20
    while True:
        found = {
            run.id: run
            async for run in temporal_env.client.list_workflows(
                f'{EXECUTION_ID.name} = "{execution_id}"'
            )
        }
        if set(found) >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert set(found) == expected
    for workflow_id, run in found.items():
        attributes = run.typed_search_attributes
        assert attributes.get(EXECUTION_ID) == execution_id
        assert attributes.get(TENANT) == "default"
        if workflow_id.startswith("job-"):
            assert attributes.get(MODEL_ID) == MODEL
            assert attributes.get(PROVIDER) == "replicate"
        else:
            assert attributes.get(MODEL_ID) is None

    query = f'{EXECUTION_ID.name} = "{execution_id}" AND {PROVIDER.name} = "replicate"'
    children = [run.id async for run in temporal_env.client.list_workflows(query)]
    assert sorted(children) == sorted(expected - {execution_workflow_id(execution_id)})


async def test_api_metrics_need_the_metrics_token_when_one_is_set(
    settings: Settings, worker: WorkerProcess
) -> None:
    port = free_port()
    keyed = settings.model_copy(
        update={"api_port": port, "metrics_token": SecretStr("metrics-token-0123456789")}
    )
    server, task = await serve(create_app(keyed), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/metrics")).status_code == 401
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = await client.get(
                "/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"}
            )
            assert right.status_code == 200
            assert "reelflow_webhook_deliveries_total" in right.text
    finally:
        await stop(server, task)


# Run in a process of its own: tracing, once on, stays on (and global) for the process's life.
_TRACED_PROCESS = """
import asyncio, sys
from fastapi.testclient import TestClient
from opentelemetry import trace
from reelflow.config import Settings
from reelflow.metrics import configure_tracing, instrument_app
from reelflow.temporal import connect

async def main() -> None:
    address, collector, task_queue = sys.argv[1:]
    assert configure_tracing(service_name="reelflow-test", endpoint=collector)
    client = await connect(Settings(_env_file=None, temporal_address=address))
    await client.start_workflow("TracedWorkflow", id=task_queue, task_queue=task_queue)
    from fastapi import FastAPI
    app = FastAPI()

    @app.post("/api/webhooks/job/{job_record_id}")
    async def webhook(job_record_id: str) -> dict[str, str]:
        return {}

    instrument_app(app)
    TestClient(app).post("/api/webhooks/job/traced-job?token=secret-token-in-url")
    trace.get_tracer_provider().shutdown()

asyncio.run(main())
"""


async def test_traces_reach_the_otlp_collector_without_webhook_tokens(
    temporal_env: WorkflowEnvironment,
) -> None:
    received: list[bytes] = []
    collector = FastAPI()

    @collector.post("/v1/traces")
    async def traces(request: Request) -> dict[str, str]:
        received.append(await request.body())
        return {}

    port = free_port()
    server, task = await serve(collector, port)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _TRACED_PROCESS,
            temporal_env.client.service_client.config.target_host,
            f"http://127.0.0.1:{port}",
            f"traced-{uuid.uuid4().hex[:8]}",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, output.decode(errors="replace")
    finally:
        await stop(server, task)
    exported = b"".join(received)
    assert b"StartWorkflow:TracedWorkflow" in exported
    assert b"/api/webhooks/job/traced-job" in exported
    assert b"secret-token-in-url" not in exported
