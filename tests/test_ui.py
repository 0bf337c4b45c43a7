"""The run viewer, end to end in headless Chromium against the real API, worker and emulator.

The browser is Debian's `chromium` (`/usr/bin/chromium`), driven by Playwright's async API with
that executable: nothing downloads a browser. Without it, the browser tests are skipped; the
tests of the page's endpoints run either way.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from pydantic import SecretStr

from api.app import create_app
from reelflow.config import Settings
from tests.conftest import ROOT, free_port, serve, stop
from tests.factories import ALICE_KEY, generate_job, plan, submit, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)
SCREENSHOTS = ROOT / ".reelflow" / "screenshots"
STORYBOARD_JOBS = ["opening", "journey", "arrival", "film", "poster"]

# Resolves with the duration of a <video> once its metadata is loaded.
VIDEO_DURATION = """
(video) => new Promise((resolve, reject) => {
  if (video.readyState >= 1) return resolve(video.duration);
  video.addEventListener("loadedmetadata", () => resolve(video.duration), { once: true });
  video.addEventListener("error", () => reject(new Error(`video error ${video.error?.code}`)),
                         { once: true });
})
"""
# Plays a <video> (muted, as autoplay policy wants) until its clock has moved.
VIDEO_PLAYS = """
async (video) => {
  video.muted = true;
  await video.play();
  while (video.currentTime === 0) await new Promise((resolve) => setTimeout(resolve, 50));
  video.pause();
  return video.currentTime;
}
"""
# Records every change of a job card's data-status, by job id, from now on.
WATCH_JOB_STATES = """
() => {
  window.seenStates = {};
  new MutationObserver((mutations) => {
    for (const { target } of mutations) {
      (window.seenStates[target.dataset.jobId] ||= []).push(target.dataset.status);
    }
  }).observe(document.getElementById("levels"),
             { attributes: true, subtree: true, attributeFilter: ["data-status"] });
}
"""


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context (its own local storage); uncaught page errors fail the test."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
async def secured_url(settings: Settings, api_url: str) -> AsyncIterator[str]:
    """A second API process, with an API key, on the shared worker and store.

    Like two API processes behind one public URL, it keeps the session's `api_base_url`, so the
    outputs' URLs (made by the worker from that URL) name the other API, not the page's origin.
    """
    port = free_port()
    server, task = await serve(
        create_app(
            settings.model_copy(
                update={"api_port": port, "reelflow_api_keys": SecretStr(f"alice:{ALICE_KEY}")}
            )
        ),
        port,
    )
    yield f"http://127.0.0.1:{port}"
    await stop(server, task)


async def _submit_example(page: Page, base_url: str, name: str) -> str:
    """Open the page, submit an example plan with the form, return the new execution's id."""
    await page.goto(f"{base_url}/")
    await page.get_by_label("Example plan").select_option(name)
    await expect(page.get_by_label("Plan (JSON)")).to_have_value(re.compile("executionPlan"))
    await page.get_by_role("button", name="Submit").click()
    await page.wait_for_url(re.compile(r"#/executions/[^/]+$"))
    return page.url.rsplit("/", 1)[-1]


async def _video_duration(page: Page, job_id: str) -> float:
    video = page.locator(f'.job[data-job-id="{job_id}"] video')
    duration: float = await asyncio.wait_for(video.evaluate(VIDEO_DURATION), timeout=30)
    return duration


# ---------------------------------------------------------------- the page's endpoints


async def test_page_and_assets_are_served_without_a_key_with_a_strict_policy(
    secured_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=secured_url) as anonymous:
        index = await anonymous.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in index.headers["content-security-policy"]
        for name, content_type in (("app.js", "text/javascript"), ("style.css", "text/css")):
            asset = await anonymous.get(f"/ui/{name}")
            assert asset.status_code == 200
            assert asset.headers["content-type"].startswith(content_type)
        for path in ("/ui/index.html", "/ui/../routes/ui.py", "/ui/nothing.js"):
            assert (await anonymous.get(path)).status_code == 404, path
        # The data the page reads is the API's, and wants the key.
        for path in ("/api/ui-config", "/api/ui/examples"):
            assert (await anonymous.get(path)).status_code == 401, path


async def test_examples_and_config_are_served_to_the_page(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    examples = (await api.get("/api/ui/examples")).json()["examples"]
    on_disk = sorted(path.name for path in (ROOT / "examples").glob("*.json"))
    assert [example["name"] for example in examples] == on_disk
    storyboard = next(example for example in examples if example["name"] == "storyboard.json")
    assert storyboard["plan"] == json.loads((ROOT / "examples" / "storyboard.json").read_text())
    config = (await api.get("/api/ui-config")).json()
    assert config == {
        "temporalUiUrl": settings.temporal_ui_url.rstrip("/"),
        "temporalNamespace": settings.temporal_namespace,
        "filesBaseUrl": f"{settings.api_base_url}/files",
    }


# ---------------------------------------------------------------- in the browser


@needs_chromium
async def test_storyboard_runs_live_in_the_viewer_and_its_film_plays(
    page: Page, api_url: str, api: httpx.AsyncClient, settings: Settings
) -> None:
    execution_id = await _submit_example(page, api_url, "storyboard.json")
    await page.evaluate(WATCH_JOB_STATES)
    await page.evaluate("window.sameDocument = true")

    await expect(page.locator("#live")).to_have_attribute("data-mode", "sse")
    await expect(page.locator(".job")).to_have_count(len(STORYBOARD_JOBS))
    # One column per depth: three generations, then the film, then its poster.
    levels = page.locator(".level")
    await expect(levels).to_have_count(3)
    await expect(levels.nth(1).locator(".job")).to_have_attribute("data-job-id", "film")
    await expect(levels.nth(2).locator(".job")).to_have_attribute("data-job-id", "poster")
    await expect(page.locator("#edges path")).to_have_count(4)
    await expect(page.locator("#temporal-link")).to_have_attribute(
        "href",
        f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{settings.temporal_namespace}"
        f"/workflows/execution-{execution_id}",
    )

    for job_id in STORYBOARD_JOBS:
        await expect(page.locator(f'.job[data-job-id="{job_id}"]')).to_have_attribute(
            "data-status", "completed", timeout=120_000
        )
    await expect(page.locator("#execution-status")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("#live")).to_have_attribute("data-mode", "ended")
    await expect(page.get_by_role("button", name="Cancel execution")).to_be_hidden()

    # Every job turned completed in front of the page, which was never reloaded.
    seen: dict[str, list[str]] = await page.evaluate("window.seenStates")
    assert await page.evaluate("window.sameDocument") is True
    for job_id in STORYBOARD_JOBS:
        assert seen.get(job_id, [])[-1:] == ["completed"], seen
    assert len(seen["film"]) >= 2, seen  # it waited for the generations before running

    # The card shows what the status API says.
    status = (await api.get(f"/api/status/{execution_id}")).json()
    film = next(job for job in status["jobs"] if job["id"] == "film")
    film_card = page.locator('.job[data-job-id="film"]')
    await expect(film_card).to_contain_text("pipeline:concat")
    await expect(film_card.locator("progress")).to_have_js_property("value", 1)
    await expect(page.locator('.job[data-job-id="opening"]')).to_contain_text(
        "bytedance/seedance-1-pro"
    )
    assert film["outputs"] and film["outputs"][0]["contentType"] == "video/mp4"

    duration = await _video_duration(page, "film")
    assert duration > 0
    assert duration == pytest.approx(film["outputs"][0]["durationSeconds"], abs=0.5)
    played = await asyncio.wait_for(film_card.locator("video").evaluate(VIDEO_PLAYS), timeout=30)
    assert played > 0
    poster = page.locator('.job[data-job-id="poster"] img')
    await expect(poster).to_have_js_property("complete", True, timeout=10_000)
    assert await poster.evaluate("(img) => img.naturalWidth") > 0

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=SCREENSHOTS / "storyboard.png", full_page=True)

    # The list shows it, with its cost from the status API.
    await page.get_by_role("link", name="← All executions").click()
    row = page.locator(f'tr[data-execution-id="{execution_id}"]')
    await expect(row.locator(".badge")).to_have_text("completed")
    await expect(row.locator("td").nth(3)).to_have_text(str(len(STORYBOARD_JOBS)))
    await expect(row.locator("td").nth(4)).to_have_text(
        re.compile(r"^\$\d+\.\d+$" if status["costUsd"] else "^—$")
    )
    await page.screenshot(path=SCREENSHOTS / "executions.png")


@needs_chromium
async def test_a_slow_run_is_canceled_from_the_viewer(
    page: Page, api_url: str, api: httpx.AsyncClient, emulator: httpx.AsyncClient
) -> None:
    await emulator.patch("/_emulator/config", json={"all": {"generation_seconds": 30}})
    execution_id = await _submit_example(page, api_url, "storyboard.json")
    await expect(page.locator("#live")).to_have_attribute("data-mode", "sse")
    opening = page.locator('.job[data-job-id="opening"]')
    await expect(opening).to_have_attribute(
        "data-status", re.compile("^(queued|processing)$"), timeout=30_000
    )

    await page.get_by_role("button", name="Cancel execution").click()

    await expect(page.locator("#execution-status")).to_have_text("canceled", timeout=60_000)
    await expect(page.get_by_role("button", name="Cancel execution")).to_be_hidden()
    await expect(page.locator("#live")).to_have_attribute("data-mode", "ended")
    status = await wait_for(api, execution_id)
    assert status["status"] == "canceled"
    for job in status["jobs"]:
        await expect(page.locator(f'.job[data-job-id="{job["id"]}"]')).to_have_attribute(
            "data-status", job["status"]
        )
    assert {job["status"] for job in status["jobs"]} == {"canceled"}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / "canceled.png")


@needs_chromium
async def test_a_refused_plan_shows_its_problems_next_to_the_form(page: Page, api_url: str) -> None:
    await page.goto(f"{api_url}/")
    textarea = page.get_by_label("Plan (JSON)")
    problems = page.locator("#submit-problems")

    await textarea.fill("{ not json")
    await page.get_by_role("button", name="Submit").click()
    await expect(problems).to_contain_text("not valid JSON")

    refused = plan(generate_job("clip", modelId="no/such-model"), generate_job("clip"))
    await textarea.fill(json.dumps(refused))
    await page.get_by_role("button", name="Submit").click()
    await expect(problems).to_contain_text("invalid execution plan")
    await expect(problems.locator("li").first).to_contain_text("executionPlan.jobs")
    assert "#/executions/" not in page.url


@needs_chromium
async def test_with_api_keys_the_page_asks_for_one_and_shows_outputs_with_it(
    page: Page, secured_url: str
) -> None:
    await page.goto(f"{secured_url}/")
    await expect(page.get_by_role("heading", name="API key required")).to_be_visible()
    await page.get_by_label("API key", exact=True).fill("not-a-key-0123456789")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#auth-error")).to_contain_text("refused")

    await page.get_by_label("API key", exact=True).fill(ALICE_KEY)
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Executions")).to_be_visible()

    # The key is kept: a reload asks no more, and the whole run is read with it.
    await _submit_example(page, secured_url, "sunset.json")
    await expect(page.locator("#live")).to_have_attribute("data-mode", "sse")
    await expect(page.locator('.job[data-job-id="sunset"]')).to_have_attribute(
        "data-status", "completed", timeout=60_000
    )
    # Files of the local store want the key too: the video is fetched with it, shown as a blob.
    # (Its URL names the public base URL, the other API: the page reads it from its own origin.)
    video = page.locator('.job[data-job-id="sunset"] video')
    await expect(video).to_have_attribute("src", re.compile("^blob:"))
    assert await _video_duration(page, "sunset") > 0

    await page.get_by_role("button", name="Forget API key").click()
    await expect(page.get_by_role("heading", name="API key required")).to_be_visible()
    assert await page.evaluate("localStorage.getItem('reelflow.apiKey')") is None


@needs_chromium
async def test_an_execution_submitted_elsewhere_is_listed_and_opened(
    page: Page, api_url: str, api: httpx.AsyncClient
) -> None:
    accepted = await submit(api, plan(generate_job("listed")))
    execution_id = accepted["executionId"]
    done: dict[str, Any] = await wait_for(api, execution_id)
    assert done["status"] == "completed", done

    await page.goto(f"{api_url}/")
    row = page.locator(f'tr[data-execution-id="{execution_id}"]')
    await expect(row.locator(".badge")).to_have_text("completed")
    await row.get_by_role("link").click()
    await expect(page.locator("#execution-id")).to_have_text(execution_id)
    await expect(page.locator('.job[data-job-id="listed"]')).to_have_attribute(
        "data-status", "completed"
    )
    await expect(page.locator("#live")).to_have_attribute("data-mode", "ended")


@needs_chromium
async def test_the_viewer_resumes_its_stream_after_each_drop(
    page: Page, api_url: str, emulator: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.routes import events

    # The server ends every stream after a second, without `end`, as it does after an hour.
    monkeypatch.setattr(events, "STREAM_MAX_SECONDS", 1.0)
    await emulator.patch("/_emulator/config", json={"all": {"generation_seconds": 4}})
    resumed_from: list[str] = []
    page.on(
        "request",
        lambda request: (
            request.url.endswith("/events")
            and "last-event-id" in request.headers
            and resumed_from.append(request.headers["last-event-id"])
        ),
    )
    await _submit_example(page, api_url, "sunset.json")
    await page.evaluate(WATCH_JOB_STATES)

    sunset = page.locator('.job[data-job-id="sunset"]')
    await expect(sunset).to_have_attribute("data-status", "completed", timeout=60_000)
    await expect(page.locator("#execution-status")).to_have_text("completed")
    await expect(page.locator("#live")).to_have_attribute("data-mode", "ended")
    assert len(resumed_from) >= 2, resumed_from
    seen: dict[str, list[str]] = await page.evaluate("window.seenStates")
    # Each state in between was shown too, across the reconnections.
    assert seen["sunset"][-1] == "completed", seen
    assert "processing" in seen["sunset"], seen
