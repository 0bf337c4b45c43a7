"""FalProvider against a mocked fal queue and JWKS endpoint, and fal webhook verification."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from reelflow.providers.base import Provider
from reelflow.providers.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    WebhookVerificationError,
)
from reelflow.providers.fal import FalProvider
from reelflow.providers.signatures import (
    SignatureMismatchError,
    ed25519_keys_from_jwks,
    verify_fal_webhook,
)
from reelflow.types import ProviderState
from tests.provider_http import (
    Handler,
    MockHttp,
    answer,
    echo_authorization,
    no_requests,
    refuse_echoing_authorization,
)

QUEUE = "https://queue.fal.test"
API_KEY = "3f1c9a2e-fal-key-id:0a9b8c7d6e5f-fal-key-secret"
JWKS_URL = "https://rest.fal.test/.well-known/jwks.json"
MODEL = "fal-ai/kling-video/v2.1/standard/text-to-video"
APP = "fal-ai/kling-video"
REQUEST_ID = "024ca5b1-45d3-4afd-883e-ad3abe2a1c4d"
VIDEO_URL = "https://v3.fal.media/files/kangaroo/_qEOfY3iKHsc86kqHUUh2_output.mp4"
STATUS_PATH = f"/{APP}/requests/{REQUEST_ID}/status"
RESULT_PATH = f"/{APP}/requests/{REQUEST_ID}"
CANCEL_PATH = f"/{APP}/requests/{REQUEST_ID}/cancel"

ProviderFactory = Callable[..., FalProvider]


def queued(**fields: Any) -> dict[str, Any]:
    """A submit answer or IN_QUEUE status as fal returns it, with `fields` overriding."""
    base = f"{QUEUE}/{APP}/requests/{REQUEST_ID}"
    return {
        "status": "IN_QUEUE",
        "request_id": REQUEST_ID,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
        "queue_position": 0,
    } | fields


def completed(**fields: Any) -> dict[str, Any]:
    """A COMPLETED status, successful unless `fields` add an error."""
    return queued(status="COMPLETED", logs=[], metrics={"inference_time": 41.5}) | fields


def log(message: str) -> dict[str, Any]:
    return {"message": message, "level": "INFO", "source": "USER", "timestamp": "2025-06-01T12:00"}


class FalQueue:
    """fal's queue API scripted per (method, path); records every request it receives."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key not in self.routes:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        status, data = self.routes[key]
        if isinstance(data, str):
            return httpx.Response(status, text=data)
        return httpx.Response(status, json=data)

    def paths(self) -> list[tuple[str, str]]:
        return [(request.method, request.url.path) for request in self.requests]


@pytest.fixture
def make_provider(mock_http: MockHttp) -> ProviderFactory:
    def factory(handler: Handler, **kwargs: Any) -> FalProvider:
        return FalProvider(
            http=mock_http(handler),
            queue_base=QUEUE + "/",
            api_key=API_KEY,
            jwks_url=JWKS_URL,
            **kwargs,
        )

    return factory


class FakeClock:
    """Monotonic seconds that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_fal_provider_satisfies_the_provider_protocol(
    make_provider: ProviderFactory,
) -> None:
    provider: Provider = make_provider(no_requests)
    assert provider.name == "fal"


# --- request shapes ---------------------------------------------------------------------------


async def test_create_posts_inputs_to_the_full_model_path_with_the_webhook_query(
    make_provider: ProviderFactory,
) -> None:
    api = FalQueue({("POST", f"/{MODEL}"): (200, queued(queue_position=3))})
    webhook = "https://reelflow.test/api/webhooks/job/j1?token=a&b=c"

    snapshot = await make_provider(api).create(
        model_path=MODEL, inputs={"prompt": "a fox", "duration": "5"}, webhook_url=webhook
    )

    [request] = api.requests
    assert request.method == "POST"
    assert request.url.path == f"/{MODEL}"
    assert request.url.params["fal_webhook"] == webhook
    assert request.headers["authorization"] == f"Key {API_KEY}"
    assert json.loads(request.content) == {"prompt": "a fox", "duration": "5"}
    assert snapshot.provider_job_id == REQUEST_ID
    assert snapshot.state is ProviderState.QUEUED
    assert snapshot.provider_status == "IN_QUEUE"


async def test_create_for_polling_sends_no_webhook_query(make_provider: ProviderFactory) -> None:
    # Older deployments answer the submit without a status; it is queued all the same.
    bare = {k: v for k, v in queued().items() if k != "status"}
    api = FalQueue({("POST", f"/{MODEL}"): (200, bare)})

    snapshot = await make_provider(api).create(model_path=MODEL, inputs={}, webhook_url=None)

    assert api.requests[0].url.query == b""
    assert snapshot.state is ProviderState.QUEUED


async def test_create_warns_when_fal_polls_the_request_elsewhere(
    make_provider: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = queued(status_url=f"{QUEUE}/{MODEL}/requests/{REQUEST_ID}/status")
    api = FalQueue({("POST", f"/{MODEL}"): (200, elsewhere)})

    with caplog.at_level(logging.WARNING, logger="reelflow.providers.fal"):
        await make_provider(api).create(model_path=MODEL, inputs={}, webhook_url=None)

    assert "differs from the one polled" in caplog.text


async def test_create_without_a_request_id_is_unavailable(make_provider: ProviderFactory) -> None:
    with pytest.raises(ProviderUnavailable, match="request_id"):
        await make_provider(answer({"status": "IN_QUEUE"})).create(
            model_path=MODEL, inputs={}, webhook_url=None
        )


@pytest.mark.parametrize(
    "model_path",
    ["", "kling-video", "fal-ai/", "/fal-ai/kling", "fal-ai/../admin", "fal ai/kling", "a/b?x=1"]
    + ["workflows/someone"],
)
async def test_malformed_model_path_is_rejected_without_a_request(
    make_provider: ProviderFactory, model_path: str
) -> None:
    provider = make_provider(no_requests)

    with pytest.raises(ProviderRejected, match="model path"):
        await provider.create(model_path=model_path, inputs={}, webhook_url=None)
    with pytest.raises(ProviderRejected, match="model path"):
        await provider.get(REQUEST_ID, model_path=model_path)
    with pytest.raises(ProviderRejected, match="model path"):
        await provider.cancel(REQUEST_ID, model_path=model_path)


@pytest.mark.parametrize(
    ("model_path", "app"),
    [
        (MODEL, "fal-ai/kling-video"),
        ("fal-ai/minimax/hailuo-02/standard/text-to-video", "fal-ai/minimax"),
        ("fal-ai/fast-sdxl", "fal-ai/fast-sdxl"),
        ("workflows/someone/my-flow/run", "workflows/someone/my-flow"),
    ],
)
async def test_status_and_result_drop_the_model_subpath(
    make_provider: ProviderFactory, model_path: str, app: str
) -> None:
    base = f"/{app}/requests/{REQUEST_ID}"
    api = FalQueue(
        {
            ("GET", f"{base}/status"): (200, completed()),
            ("GET", base): (200, {"video": {"url": VIDEO_URL}}),
        }
    )

    await make_provider(api).get(REQUEST_ID, model_path=model_path)

    assert api.paths() == [("GET", f"{base}/status"), ("GET", base)]
    status_request = api.requests[0]
    assert status_request.url.params["logs"] == "1"
    for request in api.requests:
        assert request.headers["authorization"] == f"Key {API_KEY}"


async def test_get_quotes_the_id_so_it_cannot_reach_another_endpoint(
    make_provider: ProviderFactory,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=queued())

    await make_provider(handler).get("../../x?y=1", model_path=MODEL)

    assert seen[0].url.raw_path.startswith(f"/{APP}/requests/..%2F..%2Fx%3Fy%3D1/status".encode())


async def test_get_with_empty_id_is_rejected(make_provider: ProviderFactory) -> None:
    with pytest.raises(ProviderRejected, match="request id"):
        await make_provider(no_requests).get("", model_path=MODEL)


async def test_cancel_puts_to_the_app_cancel_endpoint(make_provider: ProviderFactory) -> None:
    api = FalQueue({("PUT", CANCEL_PATH): (202, {"status": "CANCELLATION_REQUESTED"})})

    await make_provider(api).cancel(REQUEST_ID, model_path=MODEL)

    [request] = api.requests
    assert request.method == "PUT"
    assert request.url.path == CANCEL_PATH
    assert request.headers["authorization"] == f"Key {API_KEY}"


# --- status and result ------------------------------------------------------------------------


async def test_queued_request_is_queued_and_its_result_is_not_fetched(
    make_provider: ProviderFactory,
) -> None:
    api = FalQueue({("GET", STATUS_PATH): (202, queued(queue_position=7, logs=None))})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.QUEUED
    assert snapshot.provider_status == "IN_QUEUE"
    assert snapshot.output_urls == []
    assert api.paths() == [("GET", STATUS_PATH)]


@pytest.mark.parametrize(
    ("logs", "progress"),
    [
        (None, None),
        ([], None),
        ([log("Loading model"), log("Starting inference")], None),
        ([log(" 10%|█  | 5/50"), log(" 46%|████▌  | 23/50")], 0.46),
        ([log("step 9/12"), log("encoding video")], 0.75),
        ([{"level": "INFO"}, "not an entry", log("Generating: 37.5%")], 0.375),
    ],
)
async def test_request_in_progress_reports_progress_from_its_logs(
    make_provider: ProviderFactory, logs: Any, progress: float | None
) -> None:
    api = FalQueue({("GET", STATUS_PATH): (202, queued(status="IN_PROGRESS", logs=logs))})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.PROCESSING
    assert snapshot.provider_status == "IN_PROGRESS"
    assert snapshot.progress == (pytest.approx(progress) if progress is not None else None)


async def test_completed_request_fetches_its_result_and_succeeds(
    make_provider: ProviderFactory,
) -> None:
    result = {"video": {"url": VIDEO_URL, "content_type": "video/mp4", "file_size": 123}}
    api = FalQueue({("GET", STATUS_PATH): (200, completed()), ("GET", RESULT_PATH): (200, result)})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.SUCCEEDED
    assert snapshot.provider_status == "COMPLETED"
    assert snapshot.output_urls == [VIDEO_URL]
    assert snapshot.error is None
    assert snapshot.progress == 1.0
    assert snapshot.compute_seconds == 41.5


@pytest.mark.parametrize("metrics", [None, {}, {"inference_time": None}, {"inference_time": True}])
async def test_missing_inference_time_leaves_compute_seconds_unknown(
    make_provider: ProviderFactory, metrics: Any
) -> None:
    api = FalQueue(
        {
            ("GET", STATUS_PATH): (200, completed(metrics=metrics)),
            ("GET", RESULT_PATH): (200, {"video": {"url": VIDEO_URL}}),
        }
    )

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.compute_seconds is None


@pytest.mark.parametrize(
    ("error", "error_type", "expected"),
    [
        ("Request timed out", "request_timeout", "Request timed out (request_timeout)"),
        ("Runner disconnected", None, "Runner disconnected"),
        (None, "runner_server_error", "runner_server_error"),
    ],
)
async def test_completed_request_with_an_error_fails_without_fetching_the_result(
    make_provider: ProviderFactory, error: str | None, error_type: str | None, expected: str
) -> None:
    status = completed(error=error, error_type=error_type)
    api = FalQueue({("GET", STATUS_PATH): (200, status)})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "COMPLETED"
    assert snapshot.error == expected
    assert snapshot.output_urls == []
    assert snapshot.compute_seconds == 41.5
    assert api.paths() == [("GET", STATUS_PATH)]


async def test_completed_request_cancelled_by_its_caller_is_canceled(
    make_provider: ProviderFactory,
) -> None:
    status = completed(error="Request cancelled", error_type="client_cancelled")
    api = FalQueue({("GET", STATUS_PATH): (200, status)})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.CANCELED


@pytest.mark.parametrize(
    ("result", "urls"),
    [
        ({"video": {"url": VIDEO_URL}, "seed": 7}, [VIDEO_URL]),
        (
            {"videos": [{"url": VIDEO_URL}, {"url": "https://v3.fal.media/b.mp4"}, {"n": 1}]},
            [VIDEO_URL, "https://v3.fal.media/b.mp4"],
        ),
        (
            {
                "images": [
                    {"url": "https://v3.fal.media/a.png"},
                    {"url": "https://v3.fal.media/a.png"},
                ]
            },
            ["https://v3.fal.media/a.png"],
        ),
        ({"image": {"url": "https://v3.fal.media/a.png"}}, ["https://v3.fal.media/a.png"]),
        (
            {"video": {"url": VIDEO_URL}, "image": {"url": "https://v3.fal.media/poster.png"}},
            [VIDEO_URL],
        ),
    ],
    ids=["video", "videos", "images-deduplicated", "image", "video-wins-over-poster"],
)
async def test_result_yields_its_video_urls_else_its_image_urls(
    make_provider: ProviderFactory, result: dict[str, Any], urls: list[str]
) -> None:
    api = FalQueue({("GET", STATUS_PATH): (200, completed()), ("GET", RESULT_PATH): (200, result)})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.SUCCEEDED
    assert snapshot.output_urls == urls


@pytest.mark.parametrize(
    "result",
    [
        {},
        {"video": {"url": "data:video/mp4;base64,AAAA"}},
        {"video": "https://v3.fal.media/not-a-file-object.mp4"},
        {"videos": []},
        [VIDEO_URL],
    ],
)
async def test_result_without_an_output_url_is_a_clear_failure(
    make_provider: ProviderFactory, result: Any
) -> None:
    api = FalQueue({("GET", STATUS_PATH): (200, completed()), ("GET", RESULT_PATH): (200, result)})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "COMPLETED"
    assert snapshot.output_urls == []
    assert snapshot.error is not None and "no http(s) video or image URL" in snapshot.error


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", "prompt"],
                        "msg": "String too long",
                        "type": "string_too_long",
                    },
                    {"loc": ["body"], "msg": "Invalid input", "type": "value_error"},
                ]
            },
            "prompt: String too long; Invalid input",
        ),
        (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", "prompt"],
                        "msg": "The content could not be processed",
                        "type": "content_policy_violation",
                    }
                ]
            },
            "prompt: The content could not be processed",
        ),
        (400, {"detail": "Downstream service error"}, "Downstream service error"),
    ],
)
async def test_result_answering_4xx_with_a_detail_is_a_failed_job(
    make_provider: ProviderFactory, status: int, body: dict[str, Any], expected: str
) -> None:
    api = FalQueue({("GET", STATUS_PATH): (200, completed()), ("GET", RESULT_PATH): (status, body)})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.error == expected
    assert snapshot.output_urls == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, ProviderRejected), (403, ProviderRejected), (429, ProviderRateLimited)]
    + [(500, ProviderUnavailable), (503, ProviderUnavailable)],
)
async def test_result_fetch_errors_about_our_call_still_raise(
    make_provider: ProviderFactory, status: int, error: type[ProviderError]
) -> None:
    body = {"detail": "No user found for Key ID and Secret"}
    api = FalQueue({("GET", STATUS_PATH): (200, completed()), ("GET", RESULT_PATH): (status, body)})

    with pytest.raises(error):
        await make_provider(api).get(REQUEST_ID, model_path=MODEL)


async def test_result_4xx_without_fals_detail_raises_rejected(
    make_provider: ProviderFactory,
) -> None:
    api = FalQueue(
        {("GET", STATUS_PATH): (200, completed()), ("GET", RESULT_PATH): (400, "<html>bad</html>")}
    )

    with pytest.raises(ProviderRejected, match="400: <html>bad</html>"):
        await make_provider(api).get(REQUEST_ID, model_path=MODEL)


async def test_unknown_status_is_treated_as_still_processing(
    make_provider: ProviderFactory,
) -> None:
    api = FalQueue({("GET", STATUS_PATH): (200, queued(status="WARMING_UP"))})

    snapshot = await make_provider(api).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.PROCESSING
    assert snapshot.provider_status == "WARMING_UP"


@pytest.mark.parametrize("data", [{"results": []}, [], "IN_QUEUE"])
async def test_status_answer_that_is_not_a_status_is_unavailable(
    make_provider: ProviderFactory, data: Any
) -> None:
    with pytest.raises(ProviderUnavailable, match="no request status"):
        await make_provider(answer(data)).get(REQUEST_ID, model_path=MODEL)


# --- cancel -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [(202, {"status": "CANCELLATION_REQUESTED"}), (200, {"status": "OK"}), (202, "")]
    + [(400, {"status": "ALREADY_COMPLETED"})],
)
async def test_cancel_accepts_requested_and_already_completed(
    make_provider: ProviderFactory, status: int, body: Any
) -> None:
    api = FalQueue({("PUT", CANCEL_PATH): (status, body)})

    await make_provider(api).cancel(REQUEST_ID, model_path=MODEL)


async def test_cancel_of_an_unknown_request_is_rejected(make_provider: ProviderFactory) -> None:
    api = FalQueue({("PUT", CANCEL_PATH): (404, {"status": "NOT_FOUND"})})

    with pytest.raises(ProviderRejected, match="404: NOT_FOUND"):
        await make_provider(api).cancel(REQUEST_ID, model_path=MODEL)


async def test_cancel_refused_for_another_reason_is_rejected(
    make_provider: ProviderFactory,
) -> None:
    api = FalQueue({("PUT", CANCEL_PATH): (400, {"detail": "Bad request"})})

    with pytest.raises(ProviderRejected, match="Bad request"):
        await make_provider(api).cancel(REQUEST_ID, model_path=MODEL)


# --- finding a request an earlier attempt created ---------------------------------------------


async def test_find_existing_is_none_without_a_request(make_provider: ProviderFactory) -> None:
    # fal cannot look a request up by its webhook URL; an orphan shows up at the webhook route.
    found = await make_provider(no_requests).find_existing(
        model_path=MODEL,
        webhook_url="https://reelflow.test/api/webhooks/job/j1?token=t1",
        created_after=datetime.now(UTC) - timedelta(minutes=5),
    )

    assert found is None


async def test_find_existing_needs_a_timezone_aware_created_after(
    make_provider: ProviderFactory,
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await make_provider(no_requests).find_existing(
            model_path=MODEL, webhook_url=None, created_after=datetime(2025, 6, 1)
        )


# --- HTTP errors ------------------------------------------------------------------------------


async def test_429_is_rate_limited_with_retry_after_seconds(
    make_provider: ProviderFactory,
) -> None:
    handler = answer({"detail": "Too many requests"}, status=429, headers={"Retry-After": "12"})

    with pytest.raises(ProviderRateLimited, match="Too many requests") as caught:
        await make_provider(handler).create(model_path=MODEL, inputs={}, webhook_url=None)

    assert caught.value.retry_after_s == 12


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_server_errors_are_unavailable(make_provider: ProviderFactory, status: int) -> None:
    body = {"detail": "Request timed out", "error_type": "request_timeout"}

    with pytest.raises(ProviderUnavailable, match=str(status)) as caught:
        await make_provider(answer(body, status=status)).get(REQUEST_ID, model_path=MODEL)

    assert not isinstance(caught.value, ProviderRateLimited)
    assert "Request timed out (request_timeout)" in str(caught.value)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out")]
)
async def test_network_errors_and_timeouts_are_unavailable(
    make_provider: ProviderFactory, error: httpx.HTTPError
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(ProviderUnavailable):
        await make_provider(handler).create(model_path=MODEL, inputs={}, webhook_url=None)


async def test_422_on_submit_is_rejected_with_each_field_error(
    make_provider: ProviderFactory,
) -> None:
    body = {
        "detail": [
            {"loc": ["body", "duration"], "msg": "Input should be '5' or '10'", "type": "enum"},
            {"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"},
        ]
    }

    with pytest.raises(ProviderRejected) as caught:
        await make_provider(answer(body, status=422)).create(
            model_path=MODEL, inputs={"duration": "7"}, webhook_url=None
        )

    message = str(caught.value)
    assert "422" in message
    assert "duration: Input should be '5' or '10'" in message
    assert "prompt: Field required" in message


async def test_401_is_rejected_with_fals_detail(make_provider: ProviderFactory) -> None:
    body = {"detail": "No user found for Key ID and Secret"}

    with pytest.raises(ProviderRejected, match="No user found"):
        await make_provider(answer(body, status=401)).get(REQUEST_ID, model_path=MODEL)


async def test_2xx_that_is_not_json_is_unavailable(make_provider: ProviderFactory) -> None:
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        await make_provider(answer(text="<html>gateway</html>")).get(REQUEST_ID, model_path=MODEL)


@pytest.mark.parametrize(
    "handler",
    [
        echo_authorization(401),
        echo_authorization(422),
        echo_authorization(429),
        echo_authorization(500),
        refuse_echoing_authorization,
    ],
    ids=["401", "422", "429", "500", "network"],
)
async def test_no_error_message_contains_the_key(
    make_provider: ProviderFactory, handler: Handler
) -> None:
    provider = make_provider(handler)
    calls: list[Callable[[], Coroutine[None, None, Any]]] = [
        lambda: provider.create(model_path=MODEL, inputs={}, webhook_url=None),
        lambda: provider.get(REQUEST_ID, model_path=MODEL),
        lambda: provider.cancel(REQUEST_ID, model_path=MODEL),
    ]
    for call in calls:
        with pytest.raises(ProviderError) as caught:
            await call()

        error: BaseException | None = caught.value
        while error is not None:
            assert API_KEY not in str(error)
            assert API_KEY not in repr(error)
            error = error.__cause__ or error.__context__


async def test_failed_job_error_does_not_contain_the_key(make_provider: ProviderFactory) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == STATUS_PATH:
            return httpx.Response(200, json=completed())
        return httpx.Response(422, json={"detail": f"bad {request.headers['authorization']}"})

    snapshot = await make_provider(handler).get(REQUEST_ID, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.error is not None and API_KEY not in snapshot.error


async def test_repr_does_not_contain_the_key(make_provider: ProviderFactory) -> None:
    assert API_KEY not in repr(make_provider(no_requests))


async def test_constructor_requires_an_api_key() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="API key"):
            FalProvider(http=client, queue_base=QUEUE, api_key="", jwks_url=JWKS_URL)


async def test_download_headers_are_empty_for_public_cdn_urls(
    make_provider: ProviderFactory,
) -> None:
    assert make_provider(no_requests).download_headers(VIDEO_URL) == {}


# --- webhooks through the provider ------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SIGNING_KEY = Ed25519PrivateKey.generate()
ROTATED_KEY = Ed25519PrivateKey.generate()
STRANGER_KEY = Ed25519PrivateKey.generate()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def jwk(key: Ed25519PrivateKey, kid: str = "key-1") -> dict[str, str]:
    """The key as fal publishes it: an OKP JWK with the unpadded base64url public key."""
    x = base64.urlsafe_b64encode(raw_public(key)).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"}


def signed_headers(
    body: bytes,
    *,
    key: Ed25519PrivateKey = SIGNING_KEY,
    request_id: str = REQUEST_ID,
    user_id: str = "github|12345",
    at: datetime | None = None,
) -> dict[str, str]:
    """Headers fal would send with `body`, signed with `key` at time `at`."""
    timestamp = str(int((at or datetime.now(UTC)).timestamp()))
    message = "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()))
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": timestamp,
        "X-Fal-Webhook-Signature": key.sign(message.encode()).hex(),
    }


def webhook_body(**fields: Any) -> bytes:
    """A webhook body as fal posts it, successful unless `fields` say otherwise."""
    data = {
        "request_id": REQUEST_ID,
        "gateway_request_id": REQUEST_ID,
        "status": "OK",
        "payload": {"video": {"url": VIDEO_URL, "content_type": "video/mp4"}},
    } | fields
    return json.dumps(data).encode()


class JwksEndpoint:
    """fal's JWKS document; tests change `keys` to rotate them or `status` to break it."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        self.keys = list(keys) or [SIGNING_KEY]
        self.status = 200
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert str(request.url) == JWKS_URL
        assert "authorization" not in request.headers  # the key never leaves for the JWKS URL
        self.calls += 1
        await asyncio.sleep(0.01)  # long enough for concurrent webhooks to pile up
        if self.status != 200:
            return httpx.Response(self.status, json={"detail": "unavailable"})
        other = {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"}
        keys = [other] + [jwk(key, f"key-{i}") for i, key in enumerate(self.keys)]
        return httpx.Response(200, json={"keys": keys})


async def test_valid_webhook_is_parsed_into_a_succeeded_snapshot(
    make_provider: ProviderFactory,
) -> None:
    body = webhook_body()
    endpoint = JwksEndpoint()

    snapshot = await make_provider(endpoint).verify_webhook(signed_headers(body), body)

    assert snapshot.provider_job_id == REQUEST_ID
    assert snapshot.state is ProviderState.SUCCEEDED
    assert snapshot.provider_status == "OK"
    assert snapshot.output_urls == [VIDEO_URL]
    assert endpoint.calls == 1


async def test_webhook_id_is_the_queue_request_id_not_the_gateway_one(
    make_provider: ProviderFactory,
) -> None:
    body = webhook_body(gateway_request_id="last-attempt-id")

    snapshot = await make_provider(JwksEndpoint()).verify_webhook(signed_headers(body), body)

    assert snapshot.provider_job_id == REQUEST_ID


async def test_error_webhook_fails_with_the_error_and_its_details(
    make_provider: ProviderFactory,
) -> None:
    detail = [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]
    body = webhook_body(
        status="ERROR", error="Invalid status code: 422", payload={"detail": detail}
    )

    snapshot = await make_provider(JwksEndpoint()).verify_webhook(signed_headers(body), body)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "ERROR"
    assert snapshot.error == "Invalid status code: 422 (prompt: field required)"
    assert snapshot.output_urls == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"error": "Internal error", "payload": None}, "Internal error"),
        ({"payload": {"detail": "Generation timeout"}}, "Generation timeout"),
        ({"payload": None}, "fal reported an error without a message"),
    ],
)
async def test_error_webhook_without_details_still_explains(
    make_provider: ProviderFactory, fields: dict[str, Any], expected: str
) -> None:
    body = webhook_body(status="ERROR", **fields)

    snapshot = await make_provider(JwksEndpoint()).verify_webhook(signed_headers(body), body)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.error == expected


async def test_ok_webhook_without_its_payload_is_not_terminal(
    make_provider: ProviderFactory,
) -> None:
    # fal could not deliver the result (too large, not serialisable); polling fetches it.
    body = webhook_body(payload=None, payload_error="Payload too large")

    snapshot = await make_provider(JwksEndpoint()).verify_webhook(signed_headers(body), body)

    assert snapshot.state is ProviderState.PROCESSING
    assert not snapshot.state.terminal
    assert snapshot.output_urls == []


async def test_ok_webhook_whose_payload_holds_no_url_fails(make_provider: ProviderFactory) -> None:
    body = webhook_body(payload={"seed": 42})

    snapshot = await make_provider(JwksEndpoint()).verify_webhook(signed_headers(body), body)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.error is not None and "no http(s) video or image URL" in snapshot.error


async def test_webhook_signed_with_another_key_is_rejected(
    make_provider: ProviderFactory,
) -> None:
    body = webhook_body()

    with pytest.raises(SignatureMismatchError):
        await make_provider(JwksEndpoint()).verify_webhook(
            signed_headers(body, key=STRANGER_KEY), body
        )


async def test_webhook_whose_body_changed_after_signing_is_rejected(
    make_provider: ProviderFactory,
) -> None:
    body = webhook_body(status="ERROR", error="boom", payload=None)
    tampered = body.replace(b'"ERROR"', b'"OK"')

    with pytest.raises(SignatureMismatchError, match="no matching signature"):
        await make_provider(JwksEndpoint()).verify_webhook(signed_headers(body), tampered)


async def test_webhook_signed_ten_minutes_ago_is_rejected(make_provider: ProviderFactory) -> None:
    body = webhook_body()
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)

    with pytest.raises(WebhookVerificationError, match="too old") as caught:
        await make_provider(JwksEndpoint()).verify_webhook(
            signed_headers(body, at=ten_minutes_ago), body
        )

    assert not isinstance(caught.value, SignatureMismatchError)


@pytest.mark.parametrize(
    "dropped",
    [
        "X-Fal-Webhook-Request-Id",
        "X-Fal-Webhook-User-Id",
        "X-Fal-Webhook-Timestamp",
        "X-Fal-Webhook-Signature",
    ],
)
async def test_webhook_missing_a_header_is_rejected(
    make_provider: ProviderFactory, dropped: str
) -> None:
    body = webhook_body()
    headers = signed_headers(body)
    del headers[dropped]

    with pytest.raises(WebhookVerificationError, match=dropped):
        await make_provider(JwksEndpoint()).verify_webhook(headers, body)


async def test_signed_webhook_whose_body_is_not_a_fal_webhook_is_rejected(
    make_provider: ProviderFactory,
) -> None:
    provider = make_provider(JwksEndpoint())
    for body in (b"not json", b'{"hello": "world"}', b"\xff\xfe"):
        with pytest.raises(WebhookVerificationError, match="not a fal webhook"):
            await provider.verify_webhook(signed_headers(body), body)


async def test_keys_are_fetched_once_across_concurrent_webhooks(
    make_provider: ProviderFactory,
) -> None:
    endpoint = JwksEndpoint()
    provider = make_provider(endpoint)
    bodies = [webhook_body(request_id=f"req-{i}") for i in range(10)]

    snapshots = await asyncio.gather(
        *(
            provider.verify_webhook(signed_headers(body, request_id=f"req-{i}"), body)
            for i, body in enumerate(bodies)
        )
    )

    assert [s.provider_job_id for s in snapshots] == [f"req-{i}" for i in range(10)]
    assert endpoint.calls == 1


async def test_cached_keys_are_refetched_once_a_day_old(make_provider: ProviderFactory) -> None:
    endpoint, clock = JwksEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = webhook_body()
    await provider.verify_webhook(signed_headers(body), body)

    clock.now += 23 * 3600
    await provider.verify_webhook(signed_headers(body), body)
    assert endpoint.calls == 1

    clock.now += 3600
    await provider.verify_webhook(signed_headers(body), body)
    assert endpoint.calls == 2


async def test_rotated_keys_are_refetched_once_the_cached_ones_are_a_minute_old(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = JwksEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = webhook_body()
    await provider.verify_webhook(signed_headers(body), body)

    endpoint.keys = [ROTATED_KEY]  # fal rotates its signing key
    clock.now += 61
    snapshot = await provider.verify_webhook(signed_headers(body, key=ROTATED_KEY), body)

    assert snapshot.state is ProviderState.SUCCEEDED
    assert endpoint.calls == 2
    # The new keys are now the cached ones.
    await provider.verify_webhook(signed_headers(body, key=ROTATED_KEY), body)
    assert endpoint.calls == 2


async def test_bad_signature_does_not_refetch_keys_fetched_within_the_minute(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = JwksEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = webhook_body()
    await provider.verify_webhook(signed_headers(body), body)

    clock.now += 30
    with pytest.raises(SignatureMismatchError):
        await provider.verify_webhook(signed_headers(body, key=STRANGER_KEY), body)

    assert endpoint.calls == 1


async def test_forged_webhooks_refetch_keys_at_most_once_a_minute(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = JwksEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = webhook_body()
    await provider.verify_webhook(signed_headers(body), body)

    clock.now += 61
    for _ in range(5):
        with pytest.raises(SignatureMismatchError):
            await provider.verify_webhook(signed_headers(body, key=STRANGER_KEY), body)

    assert endpoint.calls == 2


async def test_failing_jwks_endpoint_is_still_asked_at_most_once_a_minute(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = JwksEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = webhook_body()
    await provider.verify_webhook(signed_headers(body), body)

    endpoint.status = 503
    clock.now += 61
    with pytest.raises(ProviderUnavailable):
        await provider.verify_webhook(signed_headers(body, key=STRANGER_KEY), body)
    for _ in range(3):
        with pytest.raises(SignatureMismatchError):
            await provider.verify_webhook(signed_headers(body, key=STRANGER_KEY), body)

    assert endpoint.calls == 2
    # Genuine webhooks keep verifying with the keys already cached.
    await provider.verify_webhook(signed_headers(body), body)


async def test_stale_webhook_does_not_trigger_a_key_refetch(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = JwksEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = webhook_body()
    await provider.verify_webhook(signed_headers(body), body)

    clock.now += 61
    stale = signed_headers(body, key=STRANGER_KEY, at=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        await provider.verify_webhook(stale, body)

    assert endpoint.calls == 1


@pytest.mark.parametrize(
    "document", [{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}, {"keys": []}, ["x"]]
)
async def test_jwks_without_an_ed25519_key_is_unavailable(
    make_provider: ProviderFactory, document: Any
) -> None:
    body = webhook_body()

    with pytest.raises(ProviderUnavailable, match="JWKS|Ed25519"):
        await make_provider(answer(document)).verify_webhook(signed_headers(body), body)


async def test_jwks_fetch_failure_is_unavailable_not_a_verification_error(
    make_provider: ProviderFactory,
) -> None:
    endpoint = JwksEndpoint()
    endpoint.status = 502
    body = webhook_body()

    with pytest.raises(ProviderUnavailable):
        await make_provider(endpoint).verify_webhook(signed_headers(body), body)


# --- verify_fal_webhook and ed25519_keys_from_jwks --------------------------------------------

BODY = webhook_body()
KEYS = [raw_public(SIGNING_KEY)]


def test_verify_returns_the_request_id_and_matches_header_names_case_insensitively() -> None:
    headers = {k.lower(): v for k, v in signed_headers(BODY, request_id="req-1", at=NOW).items()}

    assert verify_fal_webhook(jwks=KEYS, headers=headers, body=BODY, now=NOW) == "req-1"


def test_verify_accepts_a_signature_from_any_published_key() -> None:
    keys = [raw_public(STRANGER_KEY), raw_public(ROTATED_KEY), raw_public(SIGNING_KEY)]

    verify_fal_webhook(jwks=keys, headers=signed_headers(BODY, at=NOW), body=BODY, now=NOW)


def test_verify_binds_the_user_and_request_ids() -> None:
    for header in ("X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id"):
        headers = signed_headers(BODY, at=NOW) | {header: "someone-else"}
        with pytest.raises(SignatureMismatchError):
            verify_fal_webhook(jwks=KEYS, headers=headers, body=BODY, now=NOW)


@pytest.mark.parametrize(
    ("offset_s", "tolerance_s", "reason"),
    [(-301, 300, "too old"), (301, 300, "future"), (-61, 60, "too old")],
)
def test_verify_rejects_timestamps_outside_the_tolerance(
    offset_s: int, tolerance_s: int, reason: str
) -> None:
    headers = signed_headers(BODY, at=NOW + timedelta(seconds=offset_s))

    with pytest.raises(WebhookVerificationError, match=reason) as caught:
        verify_fal_webhook(jwks=KEYS, headers=headers, body=BODY, tolerance_s=tolerance_s, now=NOW)

    assert not isinstance(caught.value, SignatureMismatchError)


@pytest.mark.parametrize("offset_s", [-300, 300])
def test_verify_accepts_timestamps_at_the_edge_of_the_tolerance(offset_s: int) -> None:
    headers = signed_headers(BODY, at=NOW + timedelta(seconds=offset_s))

    verify_fal_webhook(jwks=KEYS, headers=headers, body=BODY, now=NOW)


@pytest.mark.parametrize("timestamp", ["", "abc", "1.5e9", "-1", "1748779200.5", "9" * 30])
def test_verify_rejects_a_timestamp_that_is_not_unix_seconds(timestamp: str) -> None:
    headers = signed_headers(BODY, at=NOW) | {"X-Fal-Webhook-Timestamp": timestamp}

    with pytest.raises(WebhookVerificationError, match="Timestamp") as caught:
        verify_fal_webhook(jwks=KEYS, headers=headers, body=BODY, now=NOW)

    assert not isinstance(caught.value, SignatureMismatchError)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [("zz" * 64, "not hex"), ("abc", "not hex"), ("00" * 32, "not an Ed25519 signature")],
)
def test_verify_rejects_a_malformed_signature_without_calling_it_a_mismatch(
    signature: str, reason: str
) -> None:
    headers = signed_headers(BODY, at=NOW) | {"X-Fal-Webhook-Signature": signature}

    with pytest.raises(WebhookVerificationError, match=reason) as caught:
        verify_fal_webhook(jwks=KEYS, headers=headers, body=BODY, now=NOW)

    assert not isinstance(caught.value, SignatureMismatchError)


def test_verify_accepts_an_uppercase_hex_signature() -> None:
    headers = signed_headers(BODY, at=NOW)
    headers["X-Fal-Webhook-Signature"] = headers["X-Fal-Webhook-Signature"].upper()

    verify_fal_webhook(jwks=KEYS, headers=headers, body=BODY, now=NOW)


@pytest.mark.parametrize("keys", [[], [b"too short"]])
def test_verify_with_unusable_keys_is_a_configuration_error(keys: list[bytes]) -> None:
    with pytest.raises(ValueError, match="key"):
        verify_fal_webhook(jwks=keys, headers=signed_headers(BODY, at=NOW), body=BODY, now=NOW)


def test_jwks_parsing_keeps_ed25519_signing_keys_only() -> None:
    signing, rotated = jwk(SIGNING_KEY), jwk(ROTATED_KEY, "key-2")
    document = {
        "keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "crv": "X25519", "x": signing["x"]},
            jwk(STRANGER_KEY) | {"use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": "!!not base64!!"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
            {"kty": "OKP", "crv": "Ed25519"},
            "not a key",
            signing,
            {k: v for k, v in rotated.items() if k not in ("use", "alg", "kid")},
            signing | {"kid": "same-key-again"},
        ]
    }

    assert ed25519_keys_from_jwks(document) == [raw_public(SIGNING_KEY), raw_public(ROTATED_KEY)]


@pytest.mark.parametrize("document", [None, [], {"keys": None}, {"key": []}])
def test_jwks_parsing_rejects_what_is_not_a_jwks_document(document: Any) -> None:
    with pytest.raises(ValueError, match="JWKS"):
        ed25519_keys_from_jwks(document)
