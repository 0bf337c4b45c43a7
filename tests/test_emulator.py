"""The provider emulator's Replicate API, exercised over real HTTP.

The emulator and a webhook receiver both run under uvicorn on free local ports, so requests,
webhooks and downloads cross real sockets exactly as they do for a client in development.
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from reelflow.emulator import EmulatorConfig, create_app

TOKEN = "r8_test_token"
MODEL = "bytedance/seedance-1-pro"
# Fast runs so the whole file takes seconds; retries back off briefly for the same reason.
TEST_KNOBS: dict[str, Any] = {
    "generation_seconds": 0.3,
    "generation_jitter_seconds": 0.0,
    "failure_rate": 0.0,
    "webhook_retries": 3,
    "webhook_retry_backoff_seconds": 0.05,
}


@dataclass
class Delivery:
    """One webhook request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes


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
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
    app = create_app(EmulatorConfig(public_url=url, replicate_token=TOKEN, **TEST_KNOBS))
    async for _ in _serve(app, sock):
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def admin(emulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Admin client; every test starts from a reset emulator with the test knobs."""
    async with local_client(base_url=emulator_url) as client:
        (await client.post("/_emulator/reset")).raise_for_status()
        (await client.patch("/_emulator/config", json=TEST_KNOBS)).raise_for_status()
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def replicate(
    emulator_url: str, admin: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A Replicate API client, as the provider adapter would configure it."""
    async with local_client(
        base_url=f"{emulator_url}/replicate", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        yield client


def local_client(**options: Any) -> httpx.AsyncClient:
    """A client that ignores proxy settings from the environment: every URL here is local."""
    return httpx.AsyncClient(trust_env=False, **options)


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def create(
    replicate: httpx.AsyncClient, inputs: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    response = await replicate.post(
        f"/v1/models/{MODEL}/predictions", json={"input": inputs, **extra}
    )
    assert response.status_code == 201, response.text
    prediction: dict[str, Any] = response.json()
    return prediction


async def wait_until_done(replicate: httpx.AsyncClient, prediction_id: str) -> list[dict[str, Any]]:
    """Poll a prediction until it is terminal; every state seen, last one terminal."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1]["status"] in {"starting", "processing"}:
        assert time.monotonic() < deadline, seen[-1]
        response = await replicate.get(f"/v1/predictions/{prediction_id}")
        assert response.status_code == 200, response.text
        seen.append(response.json())
        await asyncio.sleep(0.02)
    return seen


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


def probe(source: str | io.BytesIO) -> Probe:
    """What PyAV sees in a video file or URL."""
    with av.open(source, "r") as container:
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
    await admin.patch("/_emulator/config", json={"generation_seconds": 1.0})
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
    assert (await admin.get("/_emulator/stats")).json()["canceled"] == 1
    await asyncio.sleep(1.0)  # past the end of the canceled run: nothing may revive it
    assert (await replicate.get(url)).json() == canceled.json()
    assert len(receiver.deliveries[hook]) == 1


async def test_failure_rate_of_one_fails_every_prediction(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    patched = await admin.patch("/_emulator/config", json={"failure_rate": 1.0})
    assert patched.status_code == 200 and patched.json()["failure_rate"] == 1.0

    created = await create(replicate, {"prompt": "anything"})
    done = (await wait_until_done(replicate, created["id"]))[-1]

    assert done["status"] == "failed"
    assert done["output"] is None
    assert done["error"] == patched.json()["failure_message"]


async def test_invalid_config_change_is_rejected(admin: httpx.AsyncClient) -> None:
    too_high = await admin.patch("/_emulator/config", json={"failure_rate": 2})
    unknown = await admin.patch("/_emulator/config", json={"failure_rat": 0.5})

    assert too_high.status_code == 422
    assert unknown.status_code == 422
    assert (await admin.get("/_emulator/config")).json()["failure_rate"] == 0.0


async def test_stats_count_creations_per_webhook_and_reset_clears_them(
    replicate: httpx.AsyncClient, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    first, second = receiver.url("stats-a"), receiver.url("stats-b")
    filters = {"webhook_events_filter": ["completed"]}
    await create(replicate, {"prompt": "a"}, webhook=first, **filters)
    await create(replicate, {"prompt": "b"}, webhook=first, **filters)
    await create(replicate, {"prompt": "c"}, webhook=second, **filters)
    await create(replicate, {"prompt": "d"})

    stats = (await admin.get("/_emulator/stats")).json()
    assert stats == {"created": 4, "canceled": 0, "created_per_webhook": {first: 2, second: 1}}

    assert (await admin.post("/_emulator/reset")).status_code == 204
    stats = (await admin.get("/_emulator/stats")).json()
    assert stats == {"created": 0, "canceled": 0, "created_per_webhook": {}}


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


async def test_health_check(emulator_url: str) -> None:
    async with local_client() as client:
        response = await client.get(f"{emulator_url}/healthz")
    assert response.status_code == 200
