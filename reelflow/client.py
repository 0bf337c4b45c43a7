"""A small HTTP client of reelflow's own API, used by the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ApiError", "ReelflowClient", "TERMINAL_EXECUTION_STATUSES"]

TERMINAL_EXECUTION_STATUSES = frozenset({"completed", "failed", "canceled"})


class ApiError(Exception):
    """The API answered with an error; the message is its detail."""


class ReelflowClient:
    """Submit plans and read their status over HTTP."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def __aenter__(self) -> ReelflowClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._http.request(method, path, **kwargs)
        data: dict[str, Any] = response.json() if response.content else {}
        if response.status_code >= 400:
            errors = data.get("errors") or []
            lines = [f"{item['path']}: {item['message']}" for item in errors]
            raise ApiError("\n".join([str(data.get("detail", response.status_code)), *lines]))
        return data

    async def submit(
        self, plan_file: Path, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """POST a plan file to /api/execute."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self._call(
            "POST", "/api/execute", json=json.loads(plan_file.read_text()), headers=headers
        )

    async def status(self, execution_id: str) -> dict[str, Any]:
        """GET /api/status/{id}."""
        return await self._call("GET", f"/api/status/{execution_id}")

    async def wait(
        self,
        execution_id: str,
        *,
        on_update: Callable[[dict[str, Any]], None],
        interval_s: float = 0.5,
        timeout_s: float = 1800,
    ) -> dict[str, Any]:
        """Poll the status until the execution finishes, reporting each state."""
        async with asyncio.timeout(timeout_s):
            while True:
                status = await self.status(execution_id)
                on_update(status)
                if status["status"] in TERMINAL_EXECUTION_STATUSES:
                    return status
                await asyncio.sleep(interval_s)
