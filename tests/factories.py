"""Builders of plans and helpers to watch executions through the HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from reelflow.auth import webhook_token
from reelflow.config import Settings

TERMINAL = {"completed", "failed", "canceled"}
# The webhook token secret every test API shares (see conftest's settings).
WEBHOOK_SECRET = "test-webhook-token-secret"
# Two tenants' API keys (see test_security.py).
ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef"
# Servers run by tests keep idle connections as long as a deployment's do by default.
KEEPALIVE_S: int = Settings.model_fields["http_keepalive_s"].default


def webhook_path(job_record_id: str) -> str:
    """The webhook route of a job, with its token."""
    token = webhook_token(WEBHOOK_SECRET.encode(), job_record_id)
    return f"/api/webhooks/job/{job_record_id}?token={token}"


def generate_job(job_id: str = "clip", **params: Any) -> dict[str, Any]:
    """A `pipeline:generate` job on Seedance lite with a short prompt."""
    return {
        "id": job_id,
        "operation": "pipeline:generate",
        "params": {
            "modelId": "bytedance/seedance-1-lite",
            "prompt": f"test clip {job_id}",
            "durationSeconds": 5,
            **params,
        },
    }


def plan(*jobs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A submission body."""
    return {"executionPlan": {"jobs": list(jobs or [generate_job()])}, **extra}


async def submit(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """Submit and insist on 202."""
    response = await api.post("/api/execute", json=body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def wait_for(
    api: httpx.AsyncClient,
    execution_id: str,
    predicate: Callable[[dict[str, Any]], bool] = lambda s: s["status"] in TERMINAL,
    *,
    timeout_s: float = 60,
) -> dict[str, Any]:
    """Poll the status API until `predicate` holds; fail with the last status otherwise."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await api.get(f"/api/status/{execution_id}")
        assert response.status_code == 200, response.text
        status = response.json()
        if predicate(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s} s; last status: {status}")
