"""`GET /api/executions/{id}/events`: Server-Sent Events over real HTTP, and the feed behind it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from reelflow.config import Settings
from reelflow.db import repository
from reelflow.db.engine import Database
from reelflow.db.models import Execution, ExecutionJob
from reelflow.live import (
    Change,
    Cursor,
    ExecutionChange,
    InvalidCursor,
    JobChange,
    follow_execution,
)
from tests.conftest import keyed_api
from tests.factories import ALICE_KEY, BOB_KEY, generate_job, plan, submit, wait_for

EXECUTION_FIELDS = {"executionId", "status", "error", "costUsd", "updatedAt", "completedAt"}


@dataclass(frozen=True)
class Event:
    """One event as it came over the wire."""

    event: str
    id: str
    data: Any


async def read_stream(
    client: httpx.AsyncClient,
    execution_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    until: Callable[[list[Event]], bool] | None = None,
    timeout_s: float = 90,
) -> tuple[list[Event], bool]:
    """The stream's events, and whether the server closed it (False: `until` held first)."""
    events: list[Event] = []
    async with (
        asyncio.timeout(timeout_s),
        client.stream(
            "GET", f"/api/executions/{execution_id}/events", headers=headers, params=params
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                assert name in {"event", "data", "id"} and name not in fields, line
                fields[name] = value
                continue
            events.append(Event(fields["event"], fields["id"], json.loads(fields["data"])))
            fields = {}
            if until is not None and until(events):
                return events, False
    return events, True


def row(event: Event) -> str:
    """Which row an event is about: a job record id, or "execution"."""
    return event.data["jobRecordId"] if event.event == "job" else "execution"


def final_states(events: list[Event]) -> dict[str, Any]:
    """Each row's last state in a list of events."""
    return {row(event): event.data for event in events}


async def test_stream_of_a_finished_execution_is_its_state_then_end(
    api: httpx.AsyncClient,
) -> None:
    accepted = await submit(api, plan(generate_job("first"), generate_job("second")))
    status = await wait_for(api, accepted["executionId"])

    events, closed = await read_stream(api, accepted["executionId"])

    assert closed
    assert [event.event for event in events] == ["execution", "job", "job", "end"]
    execution = events[0].data
    assert set(execution) == EXECUTION_FIELDS
    assert execution == {field: status[field] for field in EXECUTION_FIELDS}
    assert [event.data for event in events[1:3]] == status["jobs"]
    assert events[-1].data == execution
    assert all(event.id for event in events)


async def test_running_job_streams_progress_and_polls_in_order_then_end(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"replicate": {"generation_seconds": 6}})
    accepted = await submit(api, plan(generate_job("slow", waitingStrategy="polling")))

    events, closed = await read_stream(api, accepted["executionId"])

    assert closed, "the server closes the stream once the execution ends"
    assert [event.event for event in events[:2]] == ["execution", "job"]
    assert events[0].data["status"] in {"queued", "running"}
    assert events[-1].event == "end"
    assert events[-1].data["status"] == "completed"
    jobs = [event.data for event in events if event.event == "job"]
    progress = [job["progress"] for job in jobs if job["progress"] is not None]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < value < 1 for value in progress), progress
    polls = [job["pollAttempts"] for job in jobs]
    assert polls == sorted(polls) and len(set(polls)) >= 3, polls
    statuses = [job["status"] for job in jobs]
    assert "processing" in statuses and statuses[-1] == "completed"
    assert jobs[-1]["outputs"], "the completed job's outputs are in its last event"
    assert len({event.id for event in events[1:-1]}) == len(events) - 2, "one id per read"
    executions = [event.data["status"] for event in events if event.event == "execution"]
    assert executions[-1] == "completed" and "running" in executions


def news(events: list[Event], known: dict[str, Any]) -> list[Event]:
    """The events that tell a client with these row states something it did not know."""
    return [event for event in events if known.get(row(event)) != event.data]


async def test_resuming_with_last_event_id_sends_exactly_the_missed_changes(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"replicate": {"generation_seconds": 5}})
    accepted = await submit(
        api,
        plan(
            generate_job("left", waitingStrategy="polling"),
            generate_job("right", waitingStrategy="polling"),
        ),
    )
    execution_id = accepted["executionId"]
    uninterrupted = asyncio.create_task(read_stream(api, execution_id))

    # A client drops after its first state (3 events) and three changes, then resumes.
    before, closed = await read_stream(api, execution_id, until=lambda events: len(events) == 6)
    assert not closed
    had = final_states(before)
    last_id = before[-1].id
    after, closed = await read_stream(api, execution_id, headers={"Last-Event-ID": last_id})
    assert closed and after[-1].event == "end"
    full, _ = await uninterrupted

    # Nothing it had is sent again, and every row ends in the same state as without the drop.
    assert news(after[:-1], had) == after[:-1]
    assert final_states(before + after) == final_states(full)

    # Once it is over, the same id sends each row it lacks, once, in its final state.
    # `?lastEventId=` works too, and the header (what EventSource sends when it reconnects)
    # wins over the one in the URL.
    by_param, closed = await read_stream(api, execution_id, params={"lastEventId": last_id})
    assert closed
    by_header, _ = await read_stream(
        api, execution_id, headers={"Last-Event-ID": last_id}, params={"lastEventId": "1:1:"}
    )
    assert by_param == by_header
    changed = {name: state for name, state in final_states(full).items() if had[name] != state}
    assert [row(event) for event in by_param[:-1]] == list(changed)
    assert final_states(by_param[:-1]) == changed

    # From the end's own id there is nothing left to send but the end.
    rest, closed = await read_stream(api, execution_id, headers={"Last-Event-ID": full[-1].id})
    assert closed and [event.event for event in rest] == ["end"]


async def test_resuming_in_the_middle_of_a_read_sends_the_rest_of_it(
    api: httpx.AsyncClient,
) -> None:
    accepted = await submit(
        api, plan(generate_job("one"), generate_job("two"), generate_job("three"))
    )
    await wait_for(api, accepted["executionId"])
    first, _ = await read_stream(
        api, accepted["executionId"], until=lambda events: len(events) == 2
    )
    assert [event.event for event in first] == ["execution", "job"]

    rest, closed = await read_stream(
        api, accepted["executionId"], headers={"Last-Event-ID": first[-1].id}
    )

    assert closed
    assert [(event.event, event.data.get("id")) for event in rest] == [
        ("job", "two"),
        ("job", "three"),
        ("end", None),
    ]


async def test_events_of_unknown_execution_are_not_found(api: httpx.AsyncClient) -> None:
    response = await api.get(f"/api/executions/{uuid.uuid4()}/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "no execution" in response.json()["detail"]


async def test_malformed_last_event_id_is_refused(api: httpx.AsyncClient) -> None:
    accepted = await submit(api, plan(generate_job("ids")))
    path = f"/api/executions/{accepted['executionId']}/events"
    for malformed in ("yesterday", "1733912345678901", "9:3:"):
        response = await api.get(path, headers={"Last-Event-ID": malformed})
        assert response.status_code == 422, malformed
        assert response.json()["errors"][0]["path"] == "header.Last-Event-ID"
    response = await api.get(path, params={"lastEventId": "9:3:"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "query.lastEventId"
    await wait_for(api, accepted["executionId"])


@pytest.fixture(scope="module")
async def keyed_url(settings: Settings, api_url: str) -> AsyncIterator[str]:
    """An API with two tenants' keys, on the shared worker."""
    async with keyed_api(settings, f"alice:{ALICE_KEY},bob:{BOB_KEY}") as url:
        yield url


async def test_events_of_another_tenants_execution_are_not_found(keyed_url: str) -> None:
    def client(key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=keyed_url, headers=headers, timeout=30)

    async with client(ALICE_KEY) as alice, client(BOB_KEY) as bob, client(None) as anonymous:
        accepted = await submit(alice, plan(generate_job("alices")))
        path = f"/api/executions/{accepted['executionId']}/events"

        refused = await bob.get(path)
        assert refused.status_code == 404
        assert refused.headers["content-type"] == "application/json"
        assert (await anonymous.get(path)).status_code == 401

        events, closed = await read_stream(alice, accepted["executionId"])
        assert closed and events[-1].event == "end"


# The feed itself, on rows written directly (no workflow), where timing can be arranged.


async def _execution_with_jobs(db: Database, count: int) -> tuple[str, list[str]]:
    now = repository.utcnow()
    execution = Execution(
        id=str(uuid.uuid4()),
        status="running",
        plan={},
        meta={},
        created_at=now,
        updated_at=now,
    )
    jobs = [
        ExecutionJob(
            id=str(uuid.uuid4()),
            execution_id=execution.id,
            job_id=f"job{position}",
            position=position,
            operation="pipeline:concat",
            params={},
            depends_on=[],
            status="processing",
            outputs=[],
            created_at=now,
            updated_at=now,
        )
        for position in range(count)
    ]
    async with db.session() as session:
        await repository.add_execution(session=session, execution=execution, jobs=jobs)
    return execution.id, [job.id for job in jobs]


async def _set_progress(session: Any, job_id: str, progress: float) -> None:
    await session.execute(
        update(ExecutionJob)
        .where(col(ExecutionJob.id) == job_id)
        .values(progress=progress, updated_at=repository.utcnow())
    )


async def _never() -> bool:
    return False


async def test_change_committed_after_a_newer_one_is_still_delivered(db: Database) -> None:
    execution_id, (first, second) = await _execution_with_jobs(db, 2)
    received: list[Change] = []

    async def consume() -> None:
        async for change in follow_execution(
            db=db, execution_id=execution_id, after=None, stop=_never, poll_interval_s=0.02
        ):
            received.append(change)

    consumer = asyncio.create_task(consume())
    try:
        while len(received) < 3:
            await asyncio.sleep(0.01)
        # The first job's change is stamped first but commits last: the feed reads (and sends)
        # the second job's change before the first one becomes visible.
        async with db.session() as slow:
            await _set_progress(slow, first, 0.25)
            await asyncio.sleep(0.05)
            async with db.session() as quick:
                await _set_progress(quick, second, 0.5)
            await asyncio.sleep(0.2)
        async with asyncio.timeout(5):
            while len(received) < 5:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
    finally:
        consumer.cancel()
    changes = [
        (change.job.id, change.job.progress)
        for change in received[3:]
        if isinstance(change, JobChange)
    ]
    assert len(changes) == len(received) - 3
    assert changes == [(second, 0.5), (first, 0.25)]


async def test_feed_stops_when_its_client_leaves(db: Database) -> None:
    execution_id, _ = await _execution_with_jobs(db, 1)

    async def gone() -> bool:
        return True

    changes = [
        change
        async for change in follow_execution(
            db=db, execution_id=execution_id, after=None, stop=gone, poll_interval_s=0.01
        )
    ]
    assert [type(change) for change in changes] == [ExecutionChange, JobChange]


def test_cursors_read_back_as_written() -> None:
    for text in ("7412:7415:7413", "7412:7415:7413-3", "7400:7402:/7412:7415:7413,7414-0"):
        assert str(Cursor.parse(text)) == text
    for text in ("9:3:", "5:9:9", "5:9:7,6", "0:0:"):
        with pytest.raises(InvalidCursor):
            Cursor.parse(text)
