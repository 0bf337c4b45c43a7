"""A small HTTP client of reelflow's own API, used by the CLI.

`ReelflowClient.events` follows an execution's Server-Sent Events
(`GET /api/executions/{id}/events`), reconnecting with `Last-Event-ID` when the connection drops
or the server closes it before the `end` event, so its caller sees every change once.

Errors: `ApiError` (the API refused the request; its message is the API's detail) and httpx's
own `httpx.HTTPError` family (the API could not be reached, after the retries `events` makes).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx

__all__ = ["ApiError", "ReelflowClient", "ServerEvent", "TERMINAL_EXECUTION_STATUSES"]

logger = logging.getLogger(__name__)

TERMINAL_EXECUTION_STATUSES = frozenset({"completed", "failed", "canceled"})

# The server sends a comment every 15 s on an idle stream: a longer silence is a dead connection.
_STREAM_READ_TIMEOUT_S = 45.0
# Answers after which reconnecting may help; any other refusal is final.
_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class ApiError(Exception):
    """The API answered with an error; the message is its detail."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The HTTP status of the answer."""


class _Retryable(Exception):
    """An answer after which reconnecting may help."""


class ServerEvent(NamedTuple):
    """One Server-Sent Event: `event`, its JSON `data` and its `id` (None when it has none)."""

    event: str
    data: Any
    id: str | None


def _error(response: httpx.Response) -> ApiError:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return ApiError(f"HTTP {response.status_code}", status_code=response.status_code)
    errors = data.get("errors") or []
    lines = [f"{item.get('path')}: {item.get('message')}" for item in errors]
    detail = str(data.get("detail", f"HTTP {response.status_code}"))
    return ApiError("\n".join([detail, *lines]), status_code=response.status_code)


async def _parse_events(lines: AsyncIterator[str]) -> AsyncIterator[ServerEvent]:
    """Decode a `text/event-stream` (WHATWG HTML, "Interpreting an event stream")."""
    event, event_id = "", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield ServerEvent(event or "message", json.loads("\n".join(data)), event_id)
            event, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value


class ReelflowClient:
    """Submit plans, list, cancel and follow executions over HTTP."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, headers=headers, transport=transport
        )

    async def __aenter__(self) -> ReelflowClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _error(response)
        data: dict[str, Any] = response.json() if response.content else {}
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

    async def list_executions(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of GET /api/executions: `{"executions": [...], "nextCursor"}`."""
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if cursor is not None:
            params["cursor"] = cursor
        return await self._call("GET", "/api/executions", params=params)

    async def cancel(self, execution_id: str) -> dict[str, Any]:
        """POST /api/executions/{id}/cancel."""
        return await self._call("POST", f"/api/executions/{execution_id}/cancel")

    async def events(
        self,
        execution_id: str,
        *,
        last_event_id: str | None = None,
        max_retries: int = 10,
        retry_delay_s: float = 0.5,
    ) -> AsyncIterator[ServerEvent]:
        """The execution's events until `end`, across reconnections.

        A dropped connection, a silent one (no keep-alive for 45 s), a stream closed before
        `end` and a 429/502/503/504 answer are retried with `Last-Event-ID`, with backoff, up
        to `max_retries` times in a row without an event in between.

        Raises:
            ApiError: the API refused the stream (unknown execution, bad key, …).
            httpx.HTTPError: the API stayed unreachable.
        """
        path = f"/api/executions/{execution_id}/events"
        timeout = httpx.Timeout(self._timeout_s, read=_STREAM_READ_TIMEOUT_S)
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            try:
                async with self._http.stream(
                    "GET", path, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        error = _error(response)
                        if response.status_code in _RETRYABLE_STATUSES:
                            raise _Retryable(str(error))
                        raise error
                    async for event in _parse_events(response.aiter_lines()):
                        failures = 0
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
                        if event.event == "end":
                            return
                reason = "the server closed the stream"
            except (httpx.TransportError, _Retryable) as error:
                reason = f"{type(error).__name__}: {error}"
            failures += 1
            if failures > max_retries:
                raise httpx.TransportError(
                    f"events of {execution_id} unavailable after {max_retries} retries: {reason}"
                )
            delay = min(retry_delay_s * 2 ** (failures - 1), 10.0)
            logger.info("Event stream interrupted (%s); resuming in %.1f s", reason, delay)
            await asyncio.sleep(delay)
