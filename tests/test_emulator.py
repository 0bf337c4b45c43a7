"""The provider emulator — Replicate, fal's queue and the Gemini API (Veo) — over real HTTP.

The emulator and a webhook receiver both run under uvicorn on free local ports, so requests,
webhooks and downloads cross real sockets exactly as they do for a client in development.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import re
import socket
import ssl
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import av
import httpx
import pytest
import pytest_asyncio
import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from reelflow.emulator import EmulatorConfig, create_app
from reelflow.providers.errors import ProviderUnavailable
from reelflow.providers.replicate import ReplicateProvider
from reelflow.serving import server_config
from reelflow.types import ProviderState
from tests.factories import KEEPALIVE_S

TOKEN = "r8_test_token"
FAL_KEY = "test-key-id:test-key-secret"
GEMINI_KEY = "test-gemini-key"
MODEL = "bytedance/seedance-1-pro"
KLING = "fal-ai/kling-video/v2.1/master/text-to-video"
HAILUO = "fal-ai/minimax/hailuo-02/standard/text-to-video"
VEO = "veo-3.0-generate-001"
# Fast runs so the whole file takes seconds; retries back off briefly for the same reason.
FAST = 0.15


def initial_config(url: str) -> EmulatorConfig:
    return EmulatorConfig.uniform(
        public_url=url,
        replicate_token=TOKEN,
        fal_key=FAL_KEY,
        gemini_api_key=GEMINI_KEY,
        generation_seconds=FAST,
        webhook_retries=3,
        webhook_retry_backoff_seconds=0.05,
    )


@dataclass
class Delivery:
    """One webhook request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)
    """Arrival, in Unix seconds (comparable with the providers' timestamps)."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint that records every request and can answer 500 a few times first."""

    base_url: str = ""
    deliveries: dict[str, list[Delivery]] = field(default_factory=lambda: defaultdict(list))
    failures_left: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/{name}")
        async def hook(name: str, request: Request) -> Response:
            self.deliveries[name].append(Delivery(dict(request.headers), await request.body()))
            if self.failures_left[name] > 0:
                self.failures_left[name] -= 1
                return Response(status_code=500)
            return Response(status_code=204)

        return app

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"


async def _serve(app: FastAPI, sock: socket.socket) -> AsyncIterator[None]:
    """Run `app` under uvicorn on an already bound socket until the generator is closed."""
    server = uvicorn.Server(
        server_config(app, "127.0.0.1", 0, keepalive_s=KEEPALIVE_S, log_level="warning")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def _bound_socket() -> tuple[socket.socket, str]:
    # Bind before building the app: the emulator must know its own URL for `urls` and outputs.
    sock = socket.socket()
    # Connections inherit it: without it, uvicorn's separate writes of a response's headers and
    # body wait 40 ms for a delayed ACK on every request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    return sock, f"http://{host}:{port}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    sock, url = _bound_socket()
    receiver = Receiver(base_url=url)
    async for _ in _serve(receiver.app(), sock):
        yield receiver


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def emulator_url() -> AsyncIterator[str]:
    sock, url = _bound_socket()
    async for _ in _serve(create_app(initial_config(url)), sock):
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def admin(emulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Admin client; every test starts from a reset emulator with the initial config."""
    async with local_client(base_url=emulator_url) as client:
        (await client.post("/_emulator/reset")).raise_for_status()
        initial = initial_config(emulator_url).model_dump(mode="json")
        (await client.patch("/_emulator/config", json=initial)).raise_for_status()
        yield client


def _api_client(prefix: str, headers: dict[str, str]) -> Any:
    """A fixture: a client of one provider's API, authenticated as its adapter would be."""

    @pytest_asyncio.fixture(loop_scope="session")
    async def client(
        emulator_url: str, admin: httpx.AsyncClient
    ) -> AsyncIterator[httpx.AsyncClient]:
        async with local_client(base_url=emulator_url + prefix, headers=headers) as api:
            yield api

    return client


# Base URLs in place of https://api.replicate.com, https://queue.fal.run and
# https://generativelanguage.googleapis.com.
replicate = _api_client("/replicate", {"Authorization": f"Bearer {TOKEN}"})
fal = _api_client("/fal", {"Authorization": f"Key {FAL_KEY}"})
gemini = _api_client("/gemini", {"x-goog-api-key": GEMINI_KEY})


# Every URL here is plain HTTP; one TLS context spares each client loading the CA bundle.
_TLS = ssl.create_default_context()


def local_client(**options: Any) -> httpx.AsyncClient:
    """A client that ignores proxy settings from the environment: every URL here is local."""
    return httpx.AsyncClient(trust_env=False, verify=_TLS, **options)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def configure(admin: httpx.AsyncClient, changes: dict[str, Any]) -> dict[str, Any]:
    response = await admin.patch("/_emulator/config", json=changes)
    assert response.status_code == 200, response.text
    config: dict[str, Any] = response.json()
    return config


async def stats(admin: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await admin.get("/_emulator/stats")).json()
    return body


# --- Replicate -----------------------------------------------------------------------------------


async def create(
    replicate: httpx.AsyncClient, inputs: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    response = await replicate.post(
        f"/v1/models/{MODEL}/predictions", json={"input": inputs, **extra}
    )
    assert response.status_code == 201, response.text
    prediction: dict[str, Any] = response.json()
    return prediction


async def poll(
    client: httpx.AsyncClient,
    url: str,
    finished: Callable[[Any], bool],
    params: dict[str, Any] | None = None,
) -> list[httpx.Response]:
    """GET `url` until `finished(body)`; every (successful) response seen."""
    seen: list[httpx.Response] = []
    deadline = time.monotonic() + 10
    while not seen or not finished(seen[-1].json()):
        assert time.monotonic() < deadline, seen[-1].text
        seen.append(await client.get(url, params=params))
        assert seen[-1].is_success, seen[-1].text
        await asyncio.sleep(0.02)
    return seen


async def wait_until_done(replicate: httpx.AsyncClient, prediction_id: str) -> list[dict[str, Any]]:
    """Poll a prediction until it is terminal; every state seen, last one terminal."""
    url = f"/v1/predictions/{prediction_id}"
    seen = await poll(replicate, url, lambda body: body["status"] not in {"starting", "processing"})
    return [response.json() for response in seen]


async def webhook_secret(replicate: httpx.AsyncClient) -> str:
    response = await replicate.get("/v1/webhooks/default/secret")
    assert response.status_code == 200
    key: str = response.json()["key"]
    return key


@dataclass(frozen=True)
class Probe:
    seconds: float
    streams: int
    codec: str
    width: int
    height: int


def probe(source: str | io.BytesIO | bytes) -> Probe:
    """What PyAV sees in a video file, URL or bytes."""
    with av.open(io.BytesIO(source) if isinstance(source, bytes) else source, "r") as container:
        stream = container.streams.video[0]
        assert container.duration is not None
        return Probe(
            seconds=container.duration / av.time_base,
            streams=len(container.streams),
            codec=stream.codec_context.name,
            width=stream.width,
            height=stream.height,
        )


def verified(secret: str, deliveries: list[Delivery]) -> list[dict[str, Any]]:
    """Verify every delivery's Standard Webhooks signature and return the bodies."""
    return [Webhook(secret).verify(d.body, d.headers) for d in deliveries]


async def test_prediction_progresses_to_succeeded_with_a_playable_mp4(
    replicate: httpx.AsyncClient, emulator_url: str
) -> None:
    created = await create(replicate, {"prompt": "a red fox in snow", "duration": 3})

    assert created["status"] == "starting"
    assert created["model"] == MODEL
    assert len(created["id"]) == 26 and created["id"].isalnum() and created["id"].islower()
    assert created["output"] is None and created["error"] is None
    assert created["data_removed"] is False
    assert created["created_at"].endswith("Z")
    assert created["urls"]["get"] == f"{emulator_url}/replicate/v1/predictions/{created['id']}"
    assert created["urls"]["cancel"] == created["urls"]["get"] + "/cancel"

    seen = await wait_until_done(replicate, created["id"])
    done = seen[-1]
    assert "processing" in {state["status"] for state in seen}
    assert done["status"] == "succeeded"
    assert done["output"] == f"{emulator_url}/replicate/delivery/{created['id']}/output.mp4"
    assert "Generating video... 25%" in done["logs"]
    assert "Generating video... 100%" in done["logs"]
    assert done["started_at"].endswith("Z") and done["completed_at"].endswith("Z")
    assert done["metrics"]["predict_time"] > 0

    async with local_client() as anonymous:  # outputs are public, like replicate.delivery
        head = await anonymous.head(done["output"])
        video = await anonymous.get(done["output"])
    assert head.status_code == 200 and head.content == b""
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert int(head.headers["content-length"]) == len(video.content)
    probed = probe(io.BytesIO(video.content))
    assert probed.streams == 1
    assert probed.codec in {"h264", "mpeg4"}
    assert (probed.width, probed.height) == (160, 90)  # default aspect ratio 16:9
    assert abs(probed.seconds - 3) < 0.1
    # FFmpeg reading the URL itself (as media probing does) needs HEAD/Range-friendly serving.
    assert await asyncio.to_thread(probe, done["output"]) == probed


async def test_output_honours_aspect_ratio_and_model_default_duration(
    replicate: httpx.AsyncClient,
) -> None:
    response = await replicate.post(
        "/v1/models/minimax/video-01/predictions", json={"input": {"prompt": "waves"}}
    )
    assert response.status_code == 201
    minimax = (await wait_until_done(replicate, response.json()["id"]))[-1]
    portrait = await create(replicate, {"prompt": "a tower", "aspect_ratio": "9:16"})
    portrait = (await wait_until_done(replicate, portrait["id"]))[-1]

    async with local_client() as anonymous:
        minimax_video = (await anonymous.get(minimax["output"])).content
        portrait_video = (await anonymous.get(portrait["output"])).content
    assert abs(probe(io.BytesIO(minimax_video)).seconds - 6) < 0.1  # video-01: no duration input
    portrait_probe = probe(io.BytesIO(portrait_video))
    assert portrait_probe.height > portrait_probe.width


async def test_webhooks_are_signed_with_the_default_secret_for_every_event(
    replicate: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = "all-events"
    created = await create(
        replicate, {"prompt": "a lighthouse at dusk"}, webhook=receiver.url(hook)
    )
    # `output` then `completed`, both showing the succeeded prediction.
    await wait_for(lambda: sum(b'"succeeded"' in d.body for d in receiver.deliveries[hook]) == 2)

    deliveries = receiver.deliveries[hook]
    bodies = verified(await webhook_secret(replicate), deliveries)
    assert {body["id"] for body in bodies} == {created["id"]}
    assert bodies[0]["status"] == "starting"  # the `start` event
    assert any(body["status"] == "processing" and body["logs"] for body in bodies)  # `logs`
    assert [body["status"] for body in bodies][-2:] == ["succeeded", "succeeded"]  # output, done
    assert bodies[-1]["output"] == bodies[-1]["urls"]["get"].replace(
        f"/v1/predictions/{created['id']}", f"/delivery/{created['id']}/output.mp4"
    )
    assert bodies[-1]["webhook"] == receiver.url(hook)
    message_ids = [d.headers["webhook-id"] for d in deliveries]
    assert all(message_id.startswith("msg_") for message_id in message_ids)
    assert len(set(message_ids)) == len(message_ids)
    assert all(d.headers["webhook-signature"].startswith("v1,") for d in deliveries)


async def test_webhook_with_a_wrong_secret_does_not_verify(
    replicate: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = "wrong-secret"
    await create(
        replicate, {"prompt": "x"}, webhook=receiver.url(hook), webhook_events_filter=["start"]
    )
    await wait_for(lambda: len(receiver.deliveries[hook]) == 1)
    delivery = receiver.deliveries[hook][0]
    other_secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(other_secret).verify(delivery.body, delivery.headers)


async def test_events_filter_with_only_completed_sends_only_the_final_webhook(
    replicate: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = "completed-only"
    created = await create(
        replicate,
        {"prompt": "rain on glass"},
        webhook=receiver.url(hook),
        webhook_events_filter=["completed"],
    )
    assert created["webhook_events_filter"] == ["completed"]
    await wait_until_done(replicate, created["id"])
    await wait_for(lambda: len(receiver.deliveries[hook]) >= 1)
    await asyncio.sleep(0.2)  # time for any stray webhook to arrive

    [body] = verified(await webhook_secret(replicate), receiver.deliveries[hook])
    assert body["status"] == "succeeded"


async def test_request_without_a_valid_token_is_unauthenticated(
    replicate: httpx.AsyncClient, emulator_url: str
) -> None:
    expected = {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    }
    async with local_client(base_url=f"{emulator_url}/replicate") as anonymous:
        missing = await anonymous.post(
            f"/v1/models/{MODEL}/predictions", json={"input": {"prompt": "x"}}
        )
        wrong = await anonymous.get(
            "/v1/webhooks/default/secret", headers={"Authorization": "Bearer r8_wrong"}
        )
    assert (missing.status_code, missing.json()) == (401, expected)
    assert (wrong.status_code, wrong.json()) == (401, expected)


async def test_input_without_prompt_fails_validation(replicate: httpx.AsyncClient) -> None:
    response = await replicate.post(
        f"/v1/models/{MODEL}/predictions", json={"input": {"duration": 5}}
    )

    assert response.status_code == 422
    assert response.json() == {
        "title": "Input validation failed",
        "detail": "- input: prompt is required",
        "status": 422,
        "invalid_fields": [
            {"type": "required", "field": "input", "description": "prompt is required"}
        ],
    }


async def test_input_of_the_wrong_type_or_out_of_range_fails_validation(
    replicate: httpx.AsyncClient,
) -> None:
    response = await replicate.post(
        f"/v1/models/{MODEL}/predictions",
        json={"input": {"prompt": 3, "duration": 60, "resolution": "4k"}},
    )

    assert response.status_code == 422
    fields = {item["field"]: item["type"] for item in response.json()["invalid_fields"]}
    assert fields == {
        "input.prompt": "invalid_type",
        "input.duration": "number_lte",
        "input.resolution": "enum",
    }


async def test_unknown_model_is_not_found(replicate: httpx.AsyncClient) -> None:
    response = await replicate.post(
        "/v1/models/nobody/nothing/predictions", json={"input": {"prompt": "x"}}
    )

    assert response.status_code == 404
    assert response.json() == {
        "detail": "The requested resource could not be found.",
        "status": 404,
    }
    unknown_prediction = await replicate.get("/v1/predictions/doesnotexist")
    assert unknown_prediction.status_code == 404


async def test_prediction_can_be_created_by_version(replicate: httpx.AsyncClient) -> None:
    first = await create(replicate, {"prompt": "x"})
    version = first["version"]

    by_reference = await replicate.post(
        "/v1/predictions", json={"version": f"{MODEL}:{version}", "input": {"prompt": "x"}}
    )
    by_id = await replicate.post(
        "/v1/predictions", json={"version": version, "input": {"prompt": "x"}}
    )
    unknown = await replicate.post("/v1/predictions", json={"version": "0" * 64, "input": {}})

    assert by_reference.status_code == 201 and by_reference.json()["model"] == MODEL
    assert by_id.status_code == 201 and by_id.json()["version"] == version
    assert unknown.status_code == 422
    assert unknown.json()["title"] == "Invalid version or not permitted"


async def test_cancel_mid_run_ends_canceled_and_sends_the_completed_webhook(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await configure(admin, {"replicate": {"generation_seconds": 0.6}})
    hook = "cancel"
    created = await create(
        replicate,
        {"prompt": "slow pan"},
        webhook=receiver.url(hook),
        webhook_events_filter=["completed"],
    )
    url = f"/v1/predictions/{created['id']}"
    async with asyncio.timeout(5):
        while (await replicate.get(url)).json()["status"] != "processing":
            await asyncio.sleep(0.02)

    canceled = await replicate.post(f"{url}/cancel")
    again = await replicate.post(f"{url}/cancel")

    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["output"] is None
    assert canceled.json()["completed_at"] is not None
    assert again.status_code == 200 and again.json() == canceled.json()
    await wait_for(lambda: len(receiver.deliveries[hook]) == 1)
    [body] = verified(await webhook_secret(replicate), receiver.deliveries[hook])
    assert body["status"] == "canceled"
    counts = await stats(admin)
    assert counts["canceled"] == counts["replicate"]["canceled"] == 1
    await asyncio.sleep(0.6)  # past the end of the canceled run: nothing may revive it
    assert (await replicate.get(url)).json() == canceled.json()
    assert len(receiver.deliveries[hook]) == 1


async def test_failure_rate_of_one_fails_every_prediction(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    patched = await configure(admin, {"replicate": {"failure_rate": 1.0}})
    assert patched["replicate"]["failure_rate"] == 1.0

    created = await create(replicate, {"prompt": "anything"})
    done = (await wait_until_done(replicate, created["id"]))[-1]

    assert done["status"] == "failed"
    assert done["output"] is None
    assert done["error"] == patched["replicate"]["failure_message"]
    assert "(E005)" in done["error"]


async def test_stats_count_creations_per_webhook_and_reset_clears_them(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    first, second = receiver.url("stats-a"), receiver.url("stats-b")
    filters = {"webhook_events_filter": ["completed"]}
    await create(replicate, {"prompt": "a"}, webhook=first, **filters)
    await create(replicate, {"prompt": "b"}, webhook=first, **filters)
    await create(replicate, {"prompt": "c"}, webhook=second, **filters)
    await create(replicate, {"prompt": "d"})

    counts = await stats(admin)
    assert counts["created"] == counts["replicate"]["created"] == 4
    assert counts["canceled"] == 0
    assert counts["created_per_webhook"] == {first: 2, second: 1}
    assert counts["replicate"]["created_per_webhook"] == {first: 2, second: 1}

    assert (await admin.post("/_emulator/reset")).status_code == 204
    counts = await stats(admin)
    assert (counts["created"], counts["canceled"], counts["created_per_webhook"]) == (0, 0, {})
    assert counts["replicate"]["created"] == 0


async def test_completed_webhook_is_retried_until_the_receiver_accepts_it(
    replicate: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = "retry"
    receiver.failures_left[hook] = 2
    await create(
        replicate, {"prompt": "x"}, webhook=receiver.url(hook), webhook_events_filter=["completed"]
    )

    await wait_for(lambda: len(receiver.deliveries[hook]) == 3)
    await asyncio.sleep(0.2)  # no attempt after the accepted one
    deliveries = receiver.deliveries[hook]
    assert len(deliveries) == 3
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1  # one message, retried
    assert all(
        body["status"] == "succeeded"
        for body in verified(await webhook_secret(replicate), deliveries)
    )


async def test_failed_deliveries_are_logged_without_the_urls_query(
    replicate: httpx.AsyncClient, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # reelflow's webhook URLs carry the job's token in their query string.
    hook = "logged"
    receiver.failures_left[hook] = 1
    caplog.set_level(logging.WARNING, logger="reelflow.emulator.webhooks")
    await create(
        replicate,
        {"prompt": "x"},
        webhook=f"{receiver.url(hook)}?token=job-token-123",
        webhook_events_filter=["completed"],
    )

    await wait_for(lambda: len(receiver.deliveries[hook]) == 2)
    failures = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert failures and all(receiver.url(hook) in message for message in failures)
    assert "job-token-123" not in caplog.text


async def test_non_final_webhook_is_not_retried(
    replicate: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = "no-retry"
    receiver.failures_left[hook] = 5
    created = await create(
        replicate, {"prompt": "x"}, webhook=receiver.url(hook), webhook_events_filter=["start"]
    )

    await wait_until_done(replicate, created["id"])
    await asyncio.sleep(0.3)
    assert len(receiver.deliveries[hook]) == 1


async def list_page(
    replicate: httpx.AsyncClient, url: str = "/v1/predictions", **params: str
) -> dict[str, Any]:
    """One page of the prediction list (`url` may be a page's `next` or `previous`)."""
    response = await replicate.get(url, params=params or None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(listing: dict[str, Any]) -> list[str]:
    return [result["id"] for result in listing["results"]]


async def test_prediction_list_is_newest_first_in_pages_of_100_linked_by_cursor_urls(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient, emulator_url: str
) -> None:
    # Long runs: no video renders while 101 predictions exist (the next reset stops them).
    await configure(admin, {"replicate": {"generation_seconds": 60}})
    created = [await create(replicate, {"prompt": f"shot {n}"}) for n in range(101)]
    newest_first = [prediction["id"] for prediction in reversed(created)]

    first = await list_page(replicate)
    second = await list_page(replicate, first["next"])
    back = await list_page(replicate, second["previous"])

    assert set(first) == {"next", "previous", "results"}
    assert first["previous"] is None
    assert first["next"].startswith(f"{emulator_url}/replicate/v1/predictions?cursor=")
    assert ids(first) == newest_first[:100]
    assert ids(second) == newest_first[100:]
    assert second["next"] is None
    assert second["previous"].startswith(f"{emulator_url}/replicate/v1/predictions?cursor=")
    assert ids(back) == ids(first) and back["previous"] is None


async def test_listed_predictions_leave_out_logs_and_webhook_which_a_fetch_shows(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await configure(admin, {"replicate": {"generation_seconds": 60}})
    hook = receiver.url("listed")
    created = await create(
        replicate, {"prompt": "x"}, webhook=hook, webhook_events_filter=["completed"]
    )

    [result] = (await list_page(replicate))["results"]
    fetched = (await replicate.get(f"/v1/predictions/{created['id']}")).json()

    assert set(result) == set(fetched) - {"logs", "webhook", "webhook_events_filter"}
    assert {k: result[k] for k in ("id", "model", "status", "source")} == {
        "id": created["id"],
        "model": MODEL,
        "status": "starting",
        "source": "api",
    }
    assert result["created_at"] == created["created_at"]
    assert result["urls"]["get"] == created["urls"]["get"]
    assert fetched["webhook"] == hook


async def test_prediction_list_filters_by_creation_time_and_keeps_filters_in_its_links(
    replicate: httpx.AsyncClient,
) -> None:
    older = await create(replicate, {"prompt": "a"})
    newer = await create(replicate, {"prompt": "b"})

    after = await list_page(replicate, created_after=newer["created_at"])
    before = await list_page(replicate, created_before=newer["created_at"])
    web = await list_page(replicate, source="web")

    assert ids(after) == [newer["id"]]  # at or after
    assert ids(before) == [older["id"]]  # strictly before
    assert ids(web) == []  # nothing here was created on the website


async def test_prediction_list_rejects_a_bad_cursor_or_time_and_needs_the_token(
    replicate: httpx.AsyncClient, emulator_url: str
) -> None:
    bad_cursor = await replicate.get("/v1/predictions", params={"cursor": "bm9wZQ=="})
    bad_time = await replicate.get("/v1/predictions", params={"created_after": "yesterday"})
    async with local_client(base_url=f"{emulator_url}/replicate") as anonymous:
        unauthenticated = await anonymous.get("/v1/predictions")

    assert (bad_cursor.status_code, bad_cursor.json()["detail"]) == (404, "Invalid cursor")
    assert bad_time.status_code == 400 and "created_after" in bad_time.json()["detail"]
    assert unauthenticated.status_code == 401


async def test_health_check(emulator_url: str) -> None:
    async with local_client() as client:
        response = await client.get(f"{emulator_url}/healthz")
    assert response.status_code == 200


# --- fal -----------------------------------------------------------------------------------------


async def submit(
    fal: httpx.AsyncClient, model: str, inputs: dict[str, Any], webhook: str | None = None
) -> dict[str, Any]:
    params = {} if webhook is None else {"fal_webhook": webhook}
    response = await fal.post(f"/{model}", json=inputs, params=params)
    assert response.status_code == 200, response.text
    submitted: dict[str, Any] = response.json()
    return submitted


async def fal_until_completed(fal: httpx.AsyncClient, status_url: str) -> list[httpx.Response]:
    """Poll a request's status (with logs) until COMPLETED; every response seen."""
    return await poll(
        fal, status_url, lambda body: body["status"] == "COMPLETED", params={"logs": 1}
    )


def verify_fal(jwks: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
    """Verify a fal webhook as fal documents it (Ed25519, JWKS keys); return its body."""
    headers = delivery.headers
    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 300
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(delivery.body).hexdigest(),
        ]
    ).encode()
    for key in jwks["keys"]:
        raw = base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4))
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(
                bytes.fromhex(headers["x-fal-webhook-signature"]), message
            )
        except InvalidSignature:
            continue
        body: dict[str, Any] = delivery.json()
        return body
    raise InvalidSignature("no key verifies the webhook")


async def fal_jwks(emulator_url: str) -> dict[str, Any]:
    async with local_client() as anonymous:  # the JWKS is public
        response = await anonymous.get(f"{emulator_url}/fal/.well-known/jwks.json")
    assert response.status_code == 200
    jwks: dict[str, Any] = response.json()
    return jwks


async def test_fal_request_goes_through_the_queue_to_a_playable_result(
    fal: httpx.AsyncClient, emulator_url: str
) -> None:
    submitted = await submit(fal, KLING, {"prompt": "a paper boat", "aspect_ratio": "9:16"})

    request_id = submitted["request_id"]
    assert uuid.UUID(request_id)
    base = f"{emulator_url}/fal/fal-ai/kling-video/requests/{request_id}"  # no endpoint subpath
    assert submitted == {
        "status": "IN_QUEUE",
        "request_id": request_id,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
        "queue_position": 0,
    }
    seen = await fal_until_completed(fal, submitted["status_url"])
    statuses = [response.json()["status"] for response in seen]
    assert "IN_PROGRESS" in statuses and statuses[-1] == "COMPLETED"
    assert {r.status_code for r in seen if r.json()["status"] != "COMPLETED"} <= {202}
    completed = seen[-1]
    assert completed.status_code == 200
    body = completed.json()
    assert "error" not in body and body["metrics"]["inference_time"] > 0
    assert [line["message"] for line in body["logs"]][-2].startswith("Generating video... 100%")
    assert {frozenset(line) for line in body["logs"]} == {
        frozenset({"message", "level", "source", "timestamp"})
    }
    without_logs = await fal.get(submitted["status_url"])
    assert without_logs.json()["logs"] is None

    result = await fal.get(submitted["response_url"])
    assert result.status_code == 200
    video = result.json()["video"]
    assert video["url"] == f"{emulator_url}/fal/files/{request_id}/output.mp4"
    assert (video["content_type"], video["file_name"]) == ("video/mp4", "output.mp4")
    async with local_client() as anonymous:  # fal's CDN is public
        download = await anonymous.get(video["url"])
    assert download.status_code == 200 and len(download.content) == video["file_size"]
    probed = probe(download.content)
    assert abs(probed.seconds - 5) < 0.1  # Kling's default "5"
    assert probed.height > probed.width
    # The full model path is for submitting only.
    by_model_path = await fal.get(f"/{KLING}/requests/{request_id}/status")
    assert by_model_path.status_code in {404, 405}
    other_app = await fal.get(f"/fal-ai/minimax/requests/{request_id}/status")
    assert other_app.status_code == 404


async def test_fal_queue_without_a_valid_key_is_unauthorized(
    fal: httpx.AsyncClient, emulator_url: str
) -> None:
    async with local_client(base_url=f"{emulator_url}/fal") as anonymous:
        missing = await anonymous.post(f"/{KLING}", json={"prompt": "x"})
        wrong = await anonymous.post(
            f"/{KLING}", json={"prompt": "x"}, headers={"Authorization": "Key nope:nope"}
        )
        bearer = await anonymous.get(
            "/fal-ai/kling-video/requests/x/status", headers={"Authorization": f"Bearer {FAL_KEY}"}
        )

    assert (missing.status_code, missing.json()) == (401, {"detail": "Unauthorized"})
    assert wrong.status_code == bearer.status_code == 401
    assert wrong.json() == {"detail": "No user found for Key ID and Secret"}


async def test_fal_input_is_validated_per_model_in_fals_error_shape(fal: httpx.AsyncClient) -> None:
    kling = await fal.post(f"/{KLING}", json={"duration": 5, "cfg_scale": 2})
    hailuo = await fal.post(f"/{HAILUO}", json={"prompt": "x", "duration": "5"})
    unknown = await fal.post("/fal-ai/nothing/here", json={"prompt": "x"})
    bad_hook = await fal.post(f"/{KLING}", params={"fal_webhook": "nope"}, json={"prompt": "x"})

    assert kling.status_code == 422
    assert kling.json() == {
        "detail": [
            {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"},
            {
                "loc": ["body", "duration"],
                "msg": "value is not a valid enumeration member; permitted: '5', '10'",
                "type": "type_error.enum",
                "ctx": {"enum_values": ["5", "10"]},
            },
            {
                "loc": ["body", "cfg_scale"],
                "msg": "ensure this value is less than or equal to 1",
                "type": "value_error.number.not_le",
                "ctx": {"limit_value": 1},
            },
        ]
    }
    assert hailuo.status_code == 422
    assert hailuo.json()["detail"][0]["ctx"] == {"enum_values": ["6", "10"]}
    assert unknown.status_code == 404
    assert bad_hook.status_code == 422
    assert bad_hook.json()["detail"][0]["loc"] == ["query", "fal_webhook"]


async def test_fal_webhook_is_signed_as_fal_documents_and_verifies_with_the_jwks(
    fal: httpx.AsyncClient, receiver: Receiver, emulator_url: str
) -> None:
    hook = "fal-ok"
    submitted = await submit(fal, HAILUO, {"prompt": "dunes"}, webhook=receiver.url(hook))
    await wait_for(lambda: len(receiver.deliveries[hook]) == 1)
    [delivery] = receiver.deliveries[hook]

    jwks = await fal_jwks(emulator_url)
    [key] = jwks["keys"]
    assert (key["kty"], key["crv"], key["use"]) == ("OKP", "Ed25519", "sig")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key["x"])  # base64url, no padding
    body = verify_fal(jwks, delivery)
    assert delivery.headers["x-fal-webhook-request-id"] == submitted["request_id"]
    assert delivery.headers["x-fal-webhook-user-id"] == "emulator-user"
    assert body == {
        "error": None,
        "gateway_request_id": submitted["request_id"],
        "payload": (await fal.get(submitted["response_url"])).json(),
        "request_id": submitted["request_id"],
        "status": "OK",
    }
    hailuo_video = await asyncio.to_thread(probe, body["payload"]["video"]["url"])
    assert abs(hailuo_video.seconds - 6) < 0.1  # Hailuo's default "6"
    tampered = Delivery(delivery.headers, delivery.body.replace(b'"OK"', b'"ERROR"'))
    with pytest.raises(InvalidSignature):
        verify_fal(jwks, tampered)


async def test_fal_failure_completes_with_an_error_a_422_result_and_an_error_webhook(
    fal: httpx.AsyncClient, admin: httpx.AsyncClient, receiver: Receiver, emulator_url: str
) -> None:
    config = await configure(admin, {"fal": {"failure_rate": 1}})
    hook = "fal-error"
    submitted = await submit(fal, KLING, {"prompt": "forbidden"}, webhook=receiver.url(hook))

    completed = (await fal_until_completed(fal, submitted["status_url"]))[-1].json()
    result = await fal.get(submitted["response_url"])

    assert completed["error"] == "Invalid status code: 422"
    assert completed["error_type"] == "content_policy_violation"
    assert result.status_code == 422
    [problem] = result.json()["detail"]
    assert problem["type"] == "content_policy_violation"
    assert problem["msg"] == config["fal"]["failure_message"]
    assert problem["loc"] == ["body", "prompt"] and problem["input"] == "forbidden"
    await wait_for(lambda: len(receiver.deliveries[hook]) == 1)
    body = verify_fal(await fal_jwks(emulator_url), receiver.deliveries[hook][0])
    assert body["status"] == "ERROR" and body["error"] == "Invalid status code: 422"
    assert body["payload"] == result.json()


async def test_fal_cancel_stops_a_request_once_and_reports_it(
    fal: httpx.AsyncClient, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await configure(admin, {"fal": {"generation_seconds": 0.6}})
    hook = "fal-cancel"
    submitted = await submit(fal, KLING, {"prompt": "slow"}, webhook=receiver.url(hook))

    canceled = await fal.put(submitted["cancel_url"])
    again = await fal.put(submitted["cancel_url"])
    unknown = await fal.put(f"/fal-ai/kling-video/requests/{uuid.uuid4()}/cancel")

    assert (canceled.status_code, canceled.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
    assert unknown.status_code == 404
    status = (await fal.get(submitted["status_url"])).json()
    assert status["status"] == "COMPLETED" and status["error_type"] == "client_cancelled"
    assert (await fal.get(submitted["response_url"])).status_code == 499
    await wait_for(lambda: len(receiver.deliveries[hook]) == 1)
    assert receiver.deliveries[hook][0].json()["status"] == "ERROR"
    counts = await stats(admin)
    assert counts["fal"]["canceled"] == counts["canceled"] == 1
    await asyncio.sleep(0.6)  # past the end of the canceled run: nothing may revive it
    assert (await fal.get(submitted["status_url"])).json() == status
    assert len(receiver.deliveries[hook]) == 1


# --- Gemini API (Veo) ----------------------------------------------------------------------------


async def start_veo(
    gemini: httpx.AsyncClient, model: str = VEO, prompt: str = "a kite", **parameters: Any
) -> httpx.Response:
    return await gemini.post(
        f"/v1beta/models/{model}:predictLongRunning",
        json={"instances": [{"prompt": prompt}], "parameters": parameters},
    )


async def veo_until_done(gemini: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    """Poll an operation until it is done; every state seen."""
    seen = await poll(gemini, f"/v1beta/{name}", lambda body: body.get("done", False))
    return [response.json() for response in seen]


async def test_veo_operation_finishes_with_a_video_downloaded_with_the_key_via_a_redirect(
    gemini: httpx.AsyncClient, emulator_url: str
) -> None:
    started = await start_veo(gemini, durationSeconds=4, aspectRatio="9:16")

    assert started.status_code == 200, started.text
    name = started.json()["name"]
    assert re.fullmatch(rf"models/{VEO}/operations/[a-z0-9]{{12}}", name)
    assert started.json() == {"name": name}  # `done` is left out while false
    seen = await veo_until_done(gemini, name)
    done = seen[-1]
    assert done["done"] is True and "error" not in done
    response = done["response"]
    assert response["@type"] == (
        "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
    )
    [sample] = response["generateVideoResponse"]["generatedSamples"]
    uri = sample["video"]["uri"]
    assert re.fullmatch(
        rf"{emulator_url}/gemini/v1beta/files/[a-z0-9]{{12}}:download\?alt=media", uri
    )

    async with local_client() as anonymous:
        without_key = await anonymous.get(uri)
        wrong_key = await anonymous.get(uri, headers={"x-goog-api-key": "nope"})
        redirect = await anonymous.get(uri, headers={"x-goog-api-key": GEMINI_KEY})
        by_param = await anonymous.get(f"{uri}&key={GEMINI_KEY}", follow_redirects=True)
        stored = await anonymous.get(redirect.headers["location"])  # the content host: no key
        forged = await anonymous.get(re.sub(r"sig=\w+", "sig=forged", redirect.headers["location"]))

    assert without_key.status_code == 403
    assert without_key.json()["error"]["status"] == "PERMISSION_DENIED"
    assert wrong_key.status_code == 400
    assert wrong_key.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert redirect.status_code == 302
    assert redirect.headers["location"].startswith(f"{emulator_url}/gemini/storage/")
    assert stored.status_code == by_param.status_code == 200
    assert stored.headers["content-type"] == "video/mp4" and stored.content == by_param.content
    probed = probe(stored.content)
    assert abs(probed.seconds - 4) < 0.1 and probed.height > probed.width
    assert forged.status_code == 403


async def test_veo_api_needs_the_key(emulator_url: str, gemini: httpx.AsyncClient) -> None:
    async with local_client(base_url=f"{emulator_url}/gemini") as anonymous:
        missing = await anonymous.post(
            f"/v1beta/models/{VEO}:predictLongRunning", json={"instances": [{"prompt": "x"}]}
        )
        wrong = await anonymous.get(
            f"/v1beta/models/{VEO}/operations/abc", headers={"x-goog-api-key": "nope"}
        )
    assert missing.status_code == 403
    assert missing.json()["error"]["message"].startswith(
        "Method doesn't allow unregistered callers"
    )
    assert wrong.json() == {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        }
    }


@pytest.mark.parametrize(
    ("model", "parameters"),
    [
        (VEO, {"durationSeconds": 5}),
        (VEO, {"aspectRatio": "1:1"}),
        (VEO, {"resolution": "1080p", "durationSeconds": 4}),
        (VEO, {"personGeneration": "dont_allow"}),
        (VEO, {"sampleCount": 2}),
        ("veo-2.0-generate-001", {"durationSeconds": 4}),
        ("veo-2.0-generate-001", {"resolution": "720p"}),
        ("veo-3.1-generate-preview", {"generateAudio": True}),
    ],
)
async def test_veo_parameters_are_validated_per_model(
    gemini: httpx.AsyncClient, model: str, parameters: dict[str, Any]
) -> None:
    response = await start_veo(gemini, model, **parameters)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_veo_accepts_each_models_documented_values_and_rejects_bad_requests(
    gemini: httpx.AsyncClient,
) -> None:
    veo2 = await start_veo(gemini, "veo-2.0-generate-001", durationSeconds=7, sampleCount=2)
    full_hd = await start_veo(gemini, "veo-3.1-generate-preview", resolution="1080p")
    as_string = await start_veo(gemini, "veo-3.0-fast-generate-001", durationSeconds="6")
    unknown = await start_veo(gemini, "veo-9")
    no_prompt = await start_veo(gemini, prompt="")
    image_url = await gemini.post(
        f"/v1beta/models/{VEO}:predictLongRunning",
        json={"instances": [{"prompt": "x", "imageUrl": "https://example.com/a.png"}]},
    )
    no_operation = await gemini.get(f"/v1beta/models/{VEO}/operations/aaaaaaaaaaaa")

    assert veo2.status_code == full_hd.status_code == as_string.status_code == 200
    assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
    assert no_prompt.status_code == image_url.status_code == 400
    assert "imageUrl" in image_url.json()["error"]["message"]
    assert no_operation.status_code == 404
    samples = (await veo_until_done(gemini, veo2.json()["name"]))[-1]["response"]
    assert len(samples["generateVideoResponse"]["generatedSamples"]) == 2


async def test_veo_failure_is_a_done_operation_with_an_error(
    gemini: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    config = await configure(admin, {"veo": {"failure_rate": 1}})

    done = (await veo_until_done(gemini, (await start_veo(gemini)).json()["name"]))[-1]

    assert done["error"] == {"code": 13, "message": config["veo"]["failure_message"]}
    assert "response" not in done


async def test_veo_safety_filter_leaves_a_done_operation_without_samples(
    gemini: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    config = await configure(admin, {"veo": {"safety_filter_rate": 1}})

    done = (await veo_until_done(gemini, (await start_veo(gemini)).json()["name"]))[-1]

    assert "error" not in done
    assert done["response"]["generateVideoResponse"] == {
        "raiMediaFilteredCount": 1,
        "raiMediaFilteredReasons": [config["veo"]["safety_filter_reason"]],
    }


# --- Faults, config and stats --------------------------------------------------------------------


async def test_create_429_carries_each_providers_reset_hint_and_creates_nothing(
    replicate: httpx.AsyncClient,
    fal: httpx.AsyncClient,
    gemini: httpx.AsyncClient,
    admin: httpx.AsyncClient,
) -> None:
    await configure(admin, {"all": {"create_429_rate": 1, "rate_limit_reset_seconds": 7}})

    from_replicate = await replicate.post(
        f"/v1/models/{MODEL}/predictions", json={"input": {"prompt": "x"}}
    )
    from_fal = await fal.post(f"/{KLING}", json={"prompt": "x"})
    from_veo = await start_veo(gemini)

    assert from_replicate.status_code == from_fal.status_code == from_veo.status_code == 429
    assert from_replicate.headers["retry-after"] == from_fal.headers["retry-after"] == "7"
    assert from_replicate.json() == {
        "title": "Request was throttled.",
        "detail": "Request was throttled. Expected available in 7 seconds.",
        "status": 429,
        "retry_after": 7,
    }
    error = from_veo.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"} in error[
        "details"
    ]
    counts = await stats(admin)
    assert counts["created"] == 0
    assert [counts[p]["injected_429s"] for p in ("replicate", "fal", "veo")] == [1, 1, 1]


async def test_status_5xx_is_transient_and_in_each_providers_shape(
    replicate: httpx.AsyncClient,
    fal: httpx.AsyncClient,
    gemini: httpx.AsyncClient,
    admin: httpx.AsyncClient,
) -> None:
    prediction = await create(replicate, {"prompt": "x"})
    request = await submit(fal, KLING, {"prompt": "x"})
    operation = (await start_veo(gemini)).json()
    await configure(admin, {"all": {"status_5xx_rate": 1}})

    failing = [
        await replicate.get(f"/v1/predictions/{prediction['id']}"),
        await replicate.get("/v1/predictions"),
        await fal.get(request["status_url"]),
        await fal.get(request["response_url"]),
        await gemini.get(f"/v1beta/{operation['name']}"),
    ]
    await configure(admin, {"all": {"status_5xx_rate": 0}})
    recovered = await replicate.get(f"/v1/predictions/{prediction['id']}")

    assert [response.status_code for response in failing] == [503] * 5
    assert failing[0].json()["status"] == failing[1].json()["status"] == 503  # problem documents
    assert "nginx" in failing[2].text  # fal's ingress page, which fal's clients retry
    assert failing[4].json()["error"]["status"] == "UNAVAILABLE"
    assert recovered.status_code == 200
    counts = await stats(admin)
    assert [counts[p]["injected_5xxs"] for p in ("replicate", "fal", "veo")] == [2, 2, 1]


async def test_create_response_delay_holds_the_answer_back_but_not_the_job(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await configure(admin, {"replicate": {"create_response_delay_seconds": 0.3}})

    started = time.monotonic()
    created = await create(replicate, {"prompt": "x"})

    assert time.monotonic() - started >= 0.3
    assert created["status"] == "starting"  # as it was when created, before the wait
    assert (await replicate.get(f"/v1/predictions/{created['id']}")).status_code == 200


async def test_a_caller_that_gives_up_during_the_delay_leaves_a_job_at_every_provider(
    replicate: httpx.AsyncClient,
    fal: httpx.AsyncClient,
    gemini: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    await configure(admin, {"all": {"create_response_delay_seconds": 1, "generation_seconds": 60}})
    replicate_hook, fal_hook = receiver.url("orphan-r"), receiver.url("orphan-f")
    gave_up = httpx.Timeout(5, read=0.2)

    with pytest.raises(httpx.ReadTimeout):
        await replicate.post(
            f"/v1/models/{MODEL}/predictions",
            json={"input": {"prompt": "x"}, "webhook": replicate_hook},
            timeout=gave_up,
        )
    with pytest.raises(httpx.ReadTimeout):
        await fal.post(
            f"/{KLING}", json={"prompt": "x"}, params={"fal_webhook": fal_hook}, timeout=gave_up
        )
    with pytest.raises(httpx.ReadTimeout):
        await gemini.post(
            f"/v1beta/models/{VEO}:predictLongRunning",
            json={"instances": [{"prompt": "x"}]},
            timeout=gave_up,
        )

    counts = await stats(admin)
    assert [counts[p]["created"] for p in ("replicate", "fal", "veo")] == [1, 1, 1]
    assert counts["created_per_webhook"] == {replicate_hook: 1, fal_hook: 1}
    # Replicate's list shows the orphan; fetching it shows whose it is.
    [orphan] = (await list_page(replicate))["results"]
    fetched = await replicate.get(f"/v1/predictions/{orphan['id']}")
    assert fetched.json()["webhook"] == replicate_hook


async def test_replicate_adapter_finds_the_prediction_whose_create_answer_it_never_got(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient, emulator_url: str, receiver: Receiver
) -> None:
    await configure(
        admin, {"replicate": {"create_response_delay_seconds": 1, "generation_seconds": 60}}
    )
    hook, other_hook = receiver.url("find-me"), receiver.url("not-me")
    since = datetime.now(UTC) - timedelta(seconds=5)
    async with local_client(timeout=httpx.Timeout(5, read=0.2)) as http:
        adapter = ReplicateProvider(http=http, api_base=f"{emulator_url}/replicate", token=TOKEN)
        with pytest.raises(ProviderUnavailable, match="timed out"):
            await adapter.create(model_path=MODEL, inputs={"prompt": "x"}, webhook_url=hook)
        # A newer prediction of the same model for another job is passed over.
        newer = await create(replicate, {"prompt": "y"}, webhook=other_hook)

        found = await adapter.find_existing(model_path=MODEL, webhook_url=hook, created_after=since)
        unknown = await adapter.find_existing(
            model_path=MODEL, webhook_url=receiver.url("never"), created_after=since
        )

    assert found is not None
    assert found.provider_job_id != newer["id"]
    assert found.state is ProviderState.QUEUED
    assert unknown is None
    assert (await stats(admin))["replicate"]["created_per_webhook"] == {hook: 1, other_hook: 1}


async def test_dropped_webhooks_never_arrive_not_even_as_retries(
    replicate: httpx.AsyncClient,
    fal: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    await configure(admin, {"all": {"webhook_drop_rate": 1}})
    created = await create(
        replicate,
        {"prompt": "x"},
        webhook=receiver.url("drop-r"),
        webhook_events_filter=["completed"],
    )
    submitted = await submit(fal, KLING, {"prompt": "x"}, webhook=receiver.url("drop-f"))

    await wait_until_done(replicate, created["id"])
    await fal_until_completed(fal, submitted["status_url"])
    await asyncio.sleep(0.3)

    assert receiver.deliveries["drop-r"] == receiver.deliveries["drop-f"] == []
    counts = await stats(admin)
    assert counts["replicate"]["webhooks_dropped"] == counts["fal"]["webhooks_dropped"] == 1
    assert counts["replicate"]["webhooks_sent"] == counts["fal"]["webhooks_sent"] == 0


async def test_duplicated_webhook_is_the_same_signed_request_twice(
    replicate: httpx.AsyncClient,
    fal: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    await configure(admin, {"all": {"webhook_duplicate_rate": 1}})
    await create(
        replicate,
        {"prompt": "x"},
        webhook=receiver.url("dup-r"),
        webhook_events_filter=["completed"],
    )
    await submit(fal, KLING, {"prompt": "x"}, webhook=receiver.url("dup-f"))

    await wait_for(
        lambda: len(receiver.deliveries["dup-r"]) == len(receiver.deliveries["dup-f"]) == 2
    )

    for name in ("dup-r", "dup-f"):
        first, second = receiver.deliveries[name]
        assert (first.headers, first.body) == (second.headers, second.body)
    secret = await webhook_secret(replicate)
    assert len(verified(secret, receiver.deliveries["dup-r"])) == 2
    counts = await stats(admin)
    assert counts["replicate"]["webhooks_duplicated"] == counts["fal"]["webhooks_duplicated"] == 1


async def test_reordered_webhooks_let_a_later_event_arrive_first(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await configure(admin, {"replicate": {"webhook_reorder_rate": 1}})
    hook = "reorder"
    created = await create(replicate, {"prompt": "x"}, webhook=receiver.url(hook))
    await wait_until_done(replicate, created["id"])
    await wait_for(lambda: any(b'"starting"' in d.body for d in receiver.deliveries[hook]))

    statuses = [d.json()["status"] for d in receiver.deliveries[hook]]
    # Every non-final event was held back; the final `completed` one overtook them all.
    assert statuses[0] == "succeeded"
    assert statuses.index("starting") > 0


async def test_delayed_webhooks_arrive_late_but_in_order(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await configure(admin, {"replicate": {"webhook_delay_seconds": 0.5}})
    hooks = [f"delay-{index}" for index in range(3)]
    for hook in hooks:
        await create(
            replicate,
            {"prompt": hook},
            webhook=receiver.url(hook),
            webhook_events_filter=["output", "completed"],
        )
    await wait_for(lambda: all(len(receiver.deliveries[hook]) == 2 for hook in hooks))

    lateness = []
    for hook in hooks:
        output, completed = receiver.deliveries[hook]
        assert output.at <= completed.at  # in order: `output` before `completed`
        finished = datetime.fromisoformat(completed.json()["completed_at"]).timestamp()
        lateness.append(completed.at - finished)
    # Each delivery waits up to 0.5 s after the one before it: two of them rarely add up to little.
    assert max(lateness) > 0.1


async def test_outputs_expire_as_each_provider_shows_it(
    replicate: httpx.AsyncClient,
    fal: httpx.AsyncClient,
    gemini: httpx.AsyncClient,
    admin: httpx.AsyncClient,
) -> None:
    await configure(admin, {"all": {"output_expiry_seconds": 0.4}})
    prediction = await create(replicate, {"prompt": "x"})
    request = await submit(fal, KLING, {"prompt": "x"})
    operation = (await start_veo(gemini)).json()
    done = (await wait_until_done(replicate, prediction["id"]))[-1]
    await fal_until_completed(fal, request["status_url"])
    veo_done = (await veo_until_done(gemini, operation["name"]))[-1]
    fal_url = (await fal.get(request["response_url"])).json()["video"]["url"]
    veo_uri = veo_done["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
    async with local_client(headers={"x-goog-api-key": GEMINI_KEY}) as client:
        before = [await client.get(url) for url in (done["output"], fal_url, veo_uri)]
        await asyncio.sleep(0.45)
        after = [await client.get(url) for url in (done["output"], fal_url, veo_uri)]
    removed = (await replicate.get(f"/v1/predictions/{prediction['id']}")).json()

    assert [response.status_code for response in before] == [200, 200, 302]
    assert [response.status_code for response in after] == [404, 404, 403]
    assert after[2].json()["error"]["status"] == "PERMISSION_DENIED"
    assert removed["data_removed"] is True
    assert (removed["output"], removed["input"], removed["status"]) == (None, {}, "succeeded")
    counts = await stats(admin)
    assert counts["replicate"]["output_downloads"] == counts["fal"]["output_downloads"] == 1


async def test_faults_apply_to_jobs_already_running(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await configure(admin, {"replicate": {"generation_seconds": 0.4}})
    created = await create(replicate, {"prompt": "x"})
    await configure(admin, {"replicate": {"failure_rate": 1}})

    assert (await wait_until_done(replicate, created["id"]))[-1]["status"] == "failed"


async def test_stats_are_kept_per_provider_with_totals_across_them(
    replicate: httpx.AsyncClient,
    fal: httpx.AsyncClient,
    gemini: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    replicate_hook, fal_hook = receiver.url("stats-r"), receiver.url("stats-f")
    filters = {"webhook_events_filter": ["completed"]}
    await create(replicate, {"prompt": "a"}, webhook=replicate_hook, **filters)
    submitted = await submit(fal, KLING, {"prompt": "b"}, webhook=fal_hook)
    await submit(fal, KLING, {"prompt": "c"})
    await start_veo(gemini)
    await fal_until_completed(fal, submitted["status_url"])
    await wait_for(lambda: len(receiver.deliveries["stats-f"]) == 1)

    counts = await stats(admin)
    assert set(counts) == {"replicate", "fal", "veo", "created", "canceled", "created_per_webhook"}
    assert counts["created"] == 4
    assert counts["created_per_webhook"] == {replicate_hook: 1, fal_hook: 1}
    assert counts["fal"] == {
        "created": 2,
        "canceled": 0,
        "created_per_webhook": {fal_hook: 1},
        "webhooks_sent": 1,
        "webhooks_dropped": 0,
        "webhooks_duplicated": 0,
        "injected_429s": 0,
        "injected_5xxs": 0,
        "output_downloads": 0,
    }
    assert (counts["veo"]["created"], counts["veo"]["created_per_webhook"]) == (1, {})


async def test_patch_changes_one_knob_of_one_provider(admin: httpx.AsyncClient) -> None:
    before = (await admin.get("/_emulator/config")).json()

    after = await configure(admin, {"fal": {"failure_rate": 0.25}})

    assert after["fal"] == {**before["fal"], "failure_rate": 0.25}
    assert after["replicate"] == before["replicate"] and after["veo"] == before["veo"]
    assert {k: v for k, v in after.items() if k != "fal"} == {
        k: v for k, v in before.items() if k != "fal"
    }


async def test_patch_all_sets_every_section_below_a_sections_own_change(
    admin: httpx.AsyncClient,
) -> None:
    after = await configure(
        admin,
        {"all": {"webhook_drop_rate": 0.5, "create_5xx_rate": 0.1}, "veo": {"create_5xx_rate": 0}},
    )

    assert [after[p]["webhook_drop_rate"] for p in ("replicate", "fal", "veo")] == [0.5] * 3
    assert [after[p]["create_5xx_rate"] for p in ("replicate", "fal", "veo")] == [0.1, 0.1, 0]
    assert after["replicate"]["generation_seconds"] == FAST  # untouched knobs keep their values


@pytest.mark.parametrize(
    "changes",
    [
        {"replicate": {"failure_rate": 2}},
        {"replicate": {"failure_rat": 0.5}},
        {"failure_rate": 0.5},  # knobs live in provider sections now
        {"all": {"safety_filter_rate": 0.5}},  # a Veo-only knob
        {"all": 1},
        {"fal": "fast"},
        {"veo": {"output_expiry_seconds": 0}},
        {"fal_webhook_signing_key": "not hex"},
    ],
)
async def test_invalid_config_change_is_rejected_and_changes_nothing(
    admin: httpx.AsyncClient, changes: dict[str, Any]
) -> None:
    before = (await admin.get("/_emulator/config")).json()

    response = await admin.patch("/_emulator/config", json=changes)

    assert response.status_code == 422, response.text
    assert (await admin.get("/_emulator/config")).json() == before


def test_uniform_config_gives_every_provider_the_same_knobs() -> None:
    config = EmulatorConfig.uniform(public_url="http://h:1/", generation_seconds=1.5, fal_key="k:s")

    assert config.public_url == "http://h:1"
    assert config.fal_key == "k:s"
    assert {config.behaviour(p).generation_seconds for p in ("replicate", "fal", "veo")} == {1.5}
    # Each provider keeps its own wording of a failure.
    assert len({config.behaviour(p).failure_message for p in ("replicate", "fal", "veo")}) == 3
    with pytest.raises(ValueError, match="generation_secs"):
        EmulatorConfig.uniform(public_url="http://h:1", generation_secs=1)
