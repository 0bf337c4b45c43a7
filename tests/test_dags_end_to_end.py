"""Plans as DAGs through the HTTP API: references, media operations, failure propagation,
cancellation, idempotent submission, listing and big fan-outs."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelflow.media import MediaInfo, probe
from tests.factories import generate_job, plan, submit, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HAILUO = "fal-ai/minimax/hailuo-02/standard/text-to-video"


async def _probe_url(url: str, suffix: str) -> MediaInfo:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200, url
    with tempfile.NamedTemporaryFile(suffix=suffix) as file:
        file.write(response.content)
        file.flush()
        return probe(file.name)


def _by_id(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["id"]: job for job in status["jobs"]}


async def test_storyboard_concatenates_three_providers_and_takes_a_thumbnail(
    api: httpx.AsyncClient,
) -> None:
    accepted = await submit(api, json.loads((EXAMPLES / "storyboard.json").read_text()))

    status = await wait_for(api, accepted["executionId"], timeout_s=120)

    assert status["status"] == "completed", status
    jobs = _by_id(status)
    clips = [
        await _probe_url(jobs[j]["outputs"][0]["url"], ".mp4")
        for j in ("opening", "journey", "arrival")
    ]
    [film] = jobs["film"]["outputs"]
    film_info = await _probe_url(film["url"], ".mp4")
    assert film_info.fps
    tolerance = len(clips) / film_info.fps
    assert film_info.duration_s == pytest.approx(sum(c.duration_s for c in clips), abs=tolerance)
    assert film["durationSeconds"] == pytest.approx(film_info.duration_s, abs=0.01)
    assert (film["width"], film["height"]) == (film_info.width, film_info.height)
    [poster] = jobs["poster"]["outputs"]
    assert poster["contentType"] == "image/jpeg"
    image = await _probe_url(poster["url"], ".jpg")
    assert (image.width, image.height) == (film_info.width, film_info.height)


async def test_image_to_video_uses_a_thumbnail_as_the_start_image(api: httpx.AsyncClient) -> None:
    accepted = await submit(api, json.loads((EXAMPLES / "image-to-video.json").read_text()))

    status = await wait_for(api, accepted["executionId"], timeout_s=90)

    assert status["status"] == "completed", status
    jobs = _by_id(status)
    assert jobs["frame"]["outputs"][0]["contentType"] == "image/png"
    assert jobs["animated"]["outputs"][0]["contentType"] == "video/mp4"


def _thumbnail(job_id: str, source: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "operation": "pipeline:thumbnail",
        "params": {"input": f"{{{{jobs.{source}.output}}}}"},
        **extra,
    }


def _concat(job_id: str, *sources: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "operation": "pipeline:concat",
        "params": {"inputs": [f"{{{{jobs.{source}.output}}}}" for source in sources]},
    }


async def test_failed_branch_of_a_diamond_skips_its_dependents_and_the_rest_finishes(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch(
        "/_emulator/config", json={"fal": {"failure_rate": 1.0, "failure_message": "GPU on fire"}}
    )
    accepted = await submit(
        api,
        plan(
            generate_job("top"),
            _thumbnail("left", "top"),
            generate_job("right", modelId=HAILUO, durationSeconds=6),
            _concat("bottom", "top", "right"),
        ),
    )

    status = await wait_for(api, accepted["executionId"], timeout_s=90)

    jobs = _by_id(status)
    assert status["status"] == "failed"
    assert jobs["top"]["status"] == "completed"
    assert jobs["left"]["status"] == "completed"
    assert jobs["right"]["status"] == "failed"
    assert "GPU on fire" in jobs["right"]["error"]
    assert jobs["bottom"]["status"] == "skipped"
    assert jobs["bottom"]["error"] == "skipped because right did not complete"
    assert status["error"].startswith("right: failed (")
    assert "bottom: skipped (skipped because right did not complete)" in status["error"]


async def test_continue_on_error_lets_dependents_that_do_not_use_the_output_run(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"fal": {"failure_rate": 1.0}})
    accepted = await submit(
        api,
        plan(
            generate_job("main"),
            {
                **generate_job("optional", modelId=HAILUO, durationSeconds=6),
                "continueOnError": True,
            },
            {**_thumbnail("cover", "main"), "dependsOn": ["optional"]},
        ),
    )

    status = await wait_for(api, accepted["executionId"], timeout_s=90)

    jobs = _by_id(status)
    assert jobs["optional"]["status"] == "failed"
    assert jobs["cover"]["status"] == "completed"
    assert status["status"] == "completed"


async def test_cancelling_mid_run_cancels_provider_jobs_and_pending_jobs(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"all": {"generation_seconds": 60}})
    before = (await emulator.get("/_emulator/stats")).json()
    accepted = await submit(
        api,
        plan(
            generate_job("replicate"),
            generate_job("fal", modelId=HAILUO, durationSeconds=6),
            generate_job("veo", modelId="veo-2.0-generate-001", durationSeconds=5),
            _concat("joined", "replicate", "fal", "veo"),
        ),
    )
    execution_id = accepted["executionId"]
    await wait_for(
        api, execution_id, lambda s: all(j["providerJobId"] for j in s["jobs"][:3]), timeout_s=30
    )

    first, second = await asyncio.gather(
        api.post(f"/api/executions/{execution_id}/cancel"),
        api.post(f"/api/executions/{execution_id}/cancel"),
    )

    assert (first.status_code, second.status_code) == (202, 202)
    status = await wait_for(api, execution_id, timeout_s=30)
    assert status["status"] == "canceled"
    assert {job["id"]: job["status"] for job in status["jobs"]} == {
        "replicate": "canceled",
        "fal": "canceled",
        "veo": "canceled",
        "joined": "canceled",
    }
    after = (await emulator.get("/_emulator/stats")).json()
    # Replicate and fal were told to stop; the Gemini API has no cancel, so Veo only stops
    # being polled.
    assert after["replicate"]["canceled"] - before["replicate"]["canceled"] == 1
    assert after["fal"]["canceled"] - before["fal"]["canceled"] == 1
    again = await api.post(f"/api/executions/{execution_id}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == f"execution {execution_id} is already canceled"


async def test_twenty_concurrent_duplicate_submissions_make_one_execution(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    key = f"key-{uuid.uuid4()}"
    before = (await emulator.get("/_emulator/stats")).json()["created"]
    responses = await asyncio.gather(
        *(
            api.post(
                "/api/execute", json=plan(generate_job("once")), headers={"Idempotency-Key": key}
            )
            for _ in range(20)
        )
    )
    assert {r.status_code for r in responses} == {202}
    [execution_id] = {r.json()["executionId"] for r in responses}
    await wait_for(api, execution_id)
    listed = (await api.get("/api/executions", params={"limit": 200})).json()["executions"]
    assert [e["executionId"] for e in listed].count(execution_id) == 1
    assert (await emulator.get("/_emulator/stats")).json()["created"] - before == 1


async def test_two_hundred_job_fan_out_fan_in(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"all": {"generation_seconds": 0.5}})
    clips = [generate_job(f"clip{i}", durationSeconds=2) for i in range(199)]
    fan_in = {
        "id": "all",
        "operation": "pipeline:concat",
        "params": {"inputs": [f"{{{{jobs.clip{i}.output}}}}" for i in range(199)]},
    }

    accepted = await submit(api, plan(*clips, fan_in))
    status = await wait_for(api, accepted["executionId"], timeout_s=240)

    assert status["status"] == "completed", status["error"]
    [film] = _by_id(status)["all"]["outputs"]
    assert film["durationSeconds"] == pytest.approx(199 * 2, abs=199 / film["fps"])


async def test_listing_pages_newest_first_without_gaps_or_repeats(api: httpx.AsyncClient) -> None:
    mine = {(await submit(api, plan(generate_job(f"page{i}"))))["executionId"] for i in range(5)}
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/api/executions", params=params)).json()
        seen.extend(page["executions"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    ids = [e["executionId"] for e in seen]
    assert len(ids) == len(set(ids))
    assert mine <= set(ids)
    keys = [(e["createdAt"], e["executionId"]) for e in seen]
    assert keys == sorted(keys, reverse=True)
    completed = (await api.get("/api/executions", params={"status": "completed"})).json()
    assert {e["status"] for e in completed["executions"]} == {"completed"}
    bad = await api.get("/api/executions", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


async def test_oversized_body_is_refused_with_422(api: httpx.AsyncClient) -> None:
    body = plan(generate_job("big", prompt="x" * 100), metadata={"padding": "y" * 2_000_000})
    response = await api.post("/api/execute", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "$"
