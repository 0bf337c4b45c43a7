"""The `reelflow` client commands (submit, watch, list, cancel, status) against the real API.

Typer's CliRunner is synchronous and each command runs its own event loop, while the API runs on
the test's loop: each command is run in a thread (`asyncio.to_thread`) so the loop keeps
serving.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from reelflow.cli import app
from reelflow.client import ReelflowClient
from reelflow.config import Settings
from reelflow.live import TERMINAL_EXECUTION_STATUSES
from tests.conftest import keyed_api
from tests.factories import ALICE_KEY, generate_job, plan, submit, wait_for


async def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `reelflow ARGS` in a thread; stdout and stderr apart."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env)


def plan_file(tmp_path: Path, *jobs: dict[str, Any]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan(*jobs)))
    return path


async def test_submit_wait_json_prints_the_final_status_and_exits_0(
    api_url: str, tmp_path: Path
) -> None:
    file = plan_file(tmp_path, generate_job("a"), generate_job("b"))

    result = await run("submit", str(file), "--wait", "--json", "--api", api_url)

    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["status"] == "completed"
    assert [job["id"] for job in status["jobs"]] == ["a", "b"]
    assert all(job["outputs"] for job in status["jobs"])


async def test_submit_wait_shows_bars_and_outputs_and_exits_1_when_a_job_fails(
    api_url: str, emulator: httpx.AsyncClient, tmp_path: Path
) -> None:
    await emulator.patch(
        "/_emulator/config", json={"replicate": {"failure_rate": 1.0, "failure_message": "Boom"}}
    )
    file = plan_file(tmp_path, generate_job("doomed"))

    result = await run("submit", str(file), "--wait", "--api", api_url)

    assert result.exit_code == 1, result.output
    assert "submitted execution" in result.stdout
    assert "doomed" in result.stdout
    assert "failed" in result.stdout
    assert "Boom" in result.stdout


async def test_submit_without_wait_prints_the_accepted_execution(
    api: httpx.AsyncClient, api_url: str, tmp_path: Path
) -> None:
    file = plan_file(tmp_path, generate_job("later"))

    result = await run("submit", str(file), "--json", "--api", api_url)

    assert result.exit_code == 0, result.output
    accepted = json.loads(result.stdout)
    assert accepted["status"] == "queued"
    await wait_for(api, accepted["executionId"])


async def test_watch_follows_a_running_execution_to_a_table_of_outputs(
    api: httpx.AsyncClient, api_url: str, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"replicate": {"generation_seconds": 3}})
    accepted = await submit(api, plan(generate_job("watched", waitingStrategy="polling")))

    result = await run("watch", accepted["executionId"], "--api", api_url)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"execution {accepted['executionId']}: completed" in out
    for column in ("job", "content type", "size", "duration", "URL"):
        assert column in out
    assert "video/mp4" in out
    assert "watched" in out


async def test_watch_json_prints_each_event_as_a_json_line(
    api: httpx.AsyncClient, api_url: str
) -> None:
    accepted = await submit(api, plan(generate_job("lines")))

    result = await run("watch", accepted["executionId"], "--json", "--api", api_url)

    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "execution"
    assert events[-1]["event"] == "end"
    assert events[-1]["data"]["status"] == "completed"
    assert all(event["id"] for event in events)
    jobs = [event["data"] for event in events if event["event"] == "job"]
    assert jobs[-1]["status"] == "completed"


async def test_watch_of_unknown_execution_fails_on_stderr(api_url: str) -> None:
    result = await run("watch", "no-such-execution", "--api", api_url)

    assert result.exit_code == 1
    assert "no execution" in result.stderr
    assert result.stdout == ""


async def test_list_json_pages_through_every_execution(
    api: httpx.AsyncClient, api_url: str
) -> None:
    ids = [(await submit(api, plan(generate_job(f"listed{n}"))))["executionId"] for n in range(3)]
    for execution_id in ids:
        await wait_for(api, execution_id)

    one_page = json.loads((await run("list", "--limit", "2", "--json", "--api", api_url)).stdout)
    assert len(one_page["executions"]) == 2 and one_page["nextCursor"]

    result = await run(
        "list", "--status", "completed", "--limit", "2", "--all", "--json", "--api", api_url
    )
    assert result.exit_code == 0, result.output
    every = json.loads(result.stdout)
    assert every["nextCursor"] is None
    listed = [item["executionId"] for item in every["executions"]]
    assert set(ids) <= set(listed)
    assert len(listed) == len(set(listed))
    assert {item["status"] for item in every["executions"]} == {"completed"}

    table = await run("list", "--limit", "200", "--api", api_url)
    assert table.exit_code == 0, table.output
    assert "executions" in table.stdout


async def test_cancel_stops_a_running_execution_and_refuses_a_finished_one(
    api: httpx.AsyncClient, api_url: str, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"replicate": {"generation_seconds": 60}})
    accepted = await submit(api, plan(generate_job("long")))
    execution_id = accepted["executionId"]
    await wait_for(api, execution_id, lambda s: s["status"] == "running")

    result = await run("cancel", execution_id, "--json", "--api", api_url)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"executionId": execution_id, "status": "canceling"}
    assert (await wait_for(api, execution_id))["status"] == "canceled"
    again = await run("cancel", execution_id, "--api", api_url)
    assert again.exit_code == 1
    assert "already canceled" in again.stderr
    watched = await run("watch", execution_id, "--json", "--api", api_url)
    assert watched.exit_code == 1, "watching a canceled execution exits 1"


async def test_status_json_is_the_status_document(api: httpx.AsyncClient, api_url: str) -> None:
    accepted = await submit(api, plan(generate_job("shown")))
    expected = await wait_for(api, accepted["executionId"])

    result = await run("status", accepted["executionId"], "--json", "--api", api_url)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == expected
    table = await run("status", accepted["executionId"], "--api", api_url)
    assert "shown" in table.stdout and "completed" in table.stdout


@pytest.fixture(scope="module")
async def keyed_url(settings: Settings, api_url: str) -> AsyncIterator[str]:
    """An API that requires an API key, on the shared worker."""
    async with keyed_api(settings, f"alice:{ALICE_KEY}") as url:
        yield url


async def test_api_url_and_key_come_from_the_environment(keyed_url: str, tmp_path: Path) -> None:
    file = plan_file(tmp_path, generate_job("keyed"))

    refused = await run("submit", str(file), "--json", env={"REELFLOW_API_URL": keyed_url})
    assert refused.exit_code == 1
    assert "API key" in refused.stderr

    env = {"REELFLOW_API_URL": keyed_url, "REELFLOW_API_KEY": ALICE_KEY}
    result = await run("submit", str(file), "--wait", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] in TERMINAL_EXECUTION_STATUSES
    assert ALICE_KEY not in result.output


class _CutStream(httpx.AsyncByteStream):
    """A response body that breaks off after `events` Server-Sent Events."""

    def __init__(self, inner: httpx.AsyncByteStream, events: int) -> None:
        self._inner = inner
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            yield chunk
            seen += chunk.count(b"\n\n")
            if seen >= self._events:
                raise httpx.ReadError("connection reset (test)")

    async def aclose(self) -> None:
        await self._inner.aclose()


class DropsFirstStream(httpx.AsyncBaseTransport):
    """Real HTTP, except that the first event stream drops after a few events."""

    def __init__(self, events: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._events = events
        self.streams: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.streams.append(request)
        if len(self.streams) > 1:
            return response
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CutStream(response.stream, self._events),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_client_resumes_a_dropped_stream_with_the_last_event_id(
    api: httpx.AsyncClient, api_url: str, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"replicate": {"generation_seconds": 3}})
    accepted = await submit(
        api, plan(generate_job("x", waitingStrategy="polling"), generate_job("y"))
    )
    transport = DropsFirstStream(events=4)

    async with ReelflowClient(api_url, transport=transport) as client:
        events = [event async for event in client.events(accepted["executionId"])]

    first, second = transport.streams[:2]
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == events[3].id
    assert events[-1].event == "end" and events[-1].data["status"] == "completed"
    # Nothing was received twice: every event after the drop is news.
    states: dict[str, Any] = {}
    for event in events[:-1]:
        name = event.data["jobRecordId"] if event.event == "job" else "execution"
        assert states.get(name) != event.data, event
        states[name] = event.data
    final = await wait_for(api, accepted["executionId"])
    assert [states[job["jobRecordId"]] for job in final["jobs"]] == final["jobs"]
