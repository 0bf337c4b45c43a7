"""VeoProvider against a mocked Gemini API."""

from __future__ import annotations

import base64
import email.utils
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from reelflow.providers import veo
from reelflow.providers.base import Provider
from reelflow.providers.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    WebhookVerificationError,
)
from reelflow.providers.veo import VeoProvider
from reelflow.types import ProviderState
from tests.provider_http import Handler, MockHttp, answer, no_requests

API_BASE = "https://generativelanguage.test"
API_KEY = "AIzaSy-secret-gemini-key-value"
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
MODEL = "veo-3.0-generate-001"
OPERATION = f"models/{MODEL}/operations/abc123xyz"
VIDEO_URI = f"{API_BASE}/v1beta/files/file-1:download?alt=media"
IMAGE_URL = "https://cdn.test/images/fox.png"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

ProviderFactory = Callable[[Handler], VeoProvider]


def operation(**fields: Any) -> dict[str, Any]:
    """An operation as the Gemini API returns it, with `fields` overriding the defaults."""
    return {"name": OPERATION} | fields


def finished(**result: Any) -> dict[str, Any]:
    """A done operation whose `generateVideoResponse` is `result`."""
    return operation(
        done=True,
        response={
            "@type": RESPONSE_TYPE,
            "generateVideoResponse": result,
        },
    )


def sample(uri: str) -> dict[str, Any]:
    return {"video": {"uri": uri}}


def google_error(code: int, status: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, **extra}}


@pytest.fixture
def make_provider(mock_http: MockHttp) -> ProviderFactory:
    def factory(handler: Handler) -> VeoProvider:
        return VeoProvider(http=mock_http(handler), api_base=API_BASE + "/", api_key=API_KEY)

    return factory


async def test_veo_provider_satisfies_the_provider_protocol(
    make_provider: ProviderFactory,
) -> None:
    provider: Provider = make_provider(no_requests)
    assert provider.name == "veo"


# --- create -----------------------------------------------------------------------------------


async def test_create_posts_prompt_and_parameters_with_the_key_in_a_header(
    make_provider: ProviderFactory,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=operation())

    snapshot = await make_provider(handler).create(
        model_path=MODEL,
        inputs={"prompt": "a fox in the snow", "aspectRatio": "16:9", "durationSeconds": 8},
        webhook_url=None,
    )

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{API_BASE}/v1beta/models/{MODEL}:predictLongRunning"
    assert request.headers["x-goog-api-key"] == API_KEY
    assert not request.url.query
    assert API_KEY not in str(request.url)
    assert json.loads(request.content) == {
        "instances": [{"prompt": "a fox in the snow"}],
        "parameters": {"aspectRatio": "16:9", "durationSeconds": 8},
    }
    assert snapshot.provider_job_id == OPERATION
    assert snapshot.state is ProviderState.PROCESSING
    assert snapshot.provider_status == "running"


async def test_create_inlines_the_image_fetched_without_the_key(
    make_provider: ProviderFactory,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "cdn.test":
            return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})
        return httpx.Response(200, json=operation())

    await make_provider(handler).create(
        model_path=MODEL,
        inputs={"prompt": "the fox runs", "image": IMAGE_URL, "resolution": "720p"},
        webhook_url=None,
    )

    image_request, create_request = seen
    assert str(image_request.url) == IMAGE_URL
    assert "x-goog-api-key" not in image_request.headers
    assert json.loads(create_request.content) == {
        "instances": [
            {
                "prompt": "the fox runs",
                "image": {
                    "bytesBase64Encoded": base64.b64encode(PNG).decode(),
                    "mimeType": "image/png",
                },
            }
        ],
        "parameters": {"resolution": "720p"},
    }


async def test_image_served_as_octet_stream_takes_its_type_from_the_extension(
    make_provider: ProviderFactory,
) -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.test":
            return httpx.Response(
                200, content=PNG, headers={"content-type": "application/octet-stream"}
            )
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=operation())

    await make_provider(handler).create(
        model_path=MODEL,
        inputs={"prompt": "x", "image": "https://cdn.test/a/fox.jpg?X-Amz-Signature=s"},
        webhook_url=None,
    )

    assert bodies[0]["instances"][0]["image"]["mimeType"] == "image/jpeg"


@pytest.mark.parametrize(
    ("image_response", "error"),
    [
        (httpx.Response(404, text="gone"), ProviderRejected),
        (httpx.Response(403, text="denied"), ProviderRejected),
        (httpx.Response(503, text="busy"), ProviderUnavailable),
        (httpx.Response(429, text="slow down"), ProviderUnavailable),
        (
            httpx.Response(200, text="<html>", headers={"content-type": "text/html"}),
            ProviderRejected,
        ),
    ],
    ids=["404", "403", "503", "429", "not-an-image"],
)
async def test_unusable_input_image_fails_before_anything_is_created(
    make_provider: ProviderFactory, image_response: httpx.Response, error: type[ProviderError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "cdn.test", "no generation may start"
        return image_response

    with pytest.raises(error, match="input image"):
        await make_provider(handler).create(
            model_path=MODEL, inputs={"prompt": "x", "image": IMAGE_URL}, webhook_url=None
        )


async def test_oversized_input_image_is_rejected(
    make_provider: ProviderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(veo, "_MAX_IMAGE_BYTES", 16)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "cdn.test", "no generation may start"
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    with pytest.raises(ProviderRejected, match="over 16 bytes"):
        await make_provider(handler).create(
            model_path=MODEL, inputs={"prompt": "x", "image": IMAGE_URL}, webhook_url=None
        )


async def test_unreachable_input_image_is_unavailable_and_its_query_is_not_shown(
    make_provider: ProviderFactory,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(ProviderUnavailable, match="input image") as caught:
        await make_provider(handler).create(
            model_path=MODEL,
            inputs={"prompt": "x", "image": f"{IMAGE_URL}?X-Amz-Signature=presigned-secret"},
            webhook_url=None,
        )

    assert "presigned-secret" not in str(caught.value)


@pytest.mark.parametrize(
    "inputs",
    [
        {},
        {"prompt": ""},
        {"prompt": "   "},
        {"prompt": 7},
        {"prompt": "x", "image": "ftp://cdn.test/fox.png"},
        {"prompt": "x", "image": "fox.png"},
        {"prompt": "x", "image": {"bytesBase64Encoded": "AAAA"}},
    ],
)
async def test_create_with_malformed_inputs_is_rejected_without_a_request(
    make_provider: ProviderFactory, inputs: dict[str, Any]
) -> None:
    with pytest.raises(ProviderRejected):
        await make_provider(no_requests).create(model_path=MODEL, inputs=inputs, webhook_url=None)


@pytest.mark.parametrize(
    "model_path", ["", "models/veo-3.0-generate-001", "../files", ".x", "veo 3", "veo?alt=1", "a/b"]
)
async def test_create_with_malformed_model_id_is_rejected_without_a_request(
    make_provider: ProviderFactory, model_path: str
) -> None:
    with pytest.raises(ProviderRejected, match="model id"):
        await make_provider(no_requests).create(
            model_path=model_path, inputs={"prompt": "x"}, webhook_url=None
        )


async def test_create_ignores_a_webhook_url_and_says_so_at_debug(
    make_provider: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=operation())

    with caplog.at_level(logging.DEBUG, logger="reelflow.providers.veo"):
        await make_provider(handler).create(
            model_path=MODEL,
            inputs={"prompt": "x"},
            webhook_url="https://reelflow.test/api/webhooks/job/j1",
        )

    assert bodies == [{"instances": [{"prompt": "x"}], "parameters": {}}]
    assert any(
        record.levelno == logging.DEBUG and "webhook" in record.getMessage()
        for record in caplog.records
    )


async def test_create_that_is_done_at_once_with_an_error_is_failed(
    make_provider: ProviderFactory,
) -> None:
    body = operation(done=True, error={"code": 3, "message": "prompt too long"})

    snapshot = await make_provider(answer(body)).create(
        model_path=MODEL, inputs={"prompt": "x"}, webhook_url=None
    )

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.error == "Veo operation failed (code 3): prompt too long"


# --- finding an operation an earlier attempt created -------------------------------------------


async def test_find_existing_is_none_without_a_request(make_provider: ProviderFactory) -> None:
    # An operation carries nothing that ties it to a job record.
    found = await make_provider(no_requests).find_existing(
        model_path=MODEL, webhook_url=None, created_after=datetime.now(UTC) - timedelta(minutes=5)
    )

    assert found is None


async def test_find_existing_needs_a_timezone_aware_created_after(
    make_provider: ProviderFactory,
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await make_provider(no_requests).find_existing(
            model_path=MODEL, webhook_url=None, created_after=datetime(2025, 6, 1)
        )


# --- get and the operation's states -----------------------------------------------------------


async def test_get_fetches_the_operation_by_name(make_provider: ProviderFactory) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=operation(done=False))

    snapshot = await make_provider(handler).get(OPERATION, model_path=MODEL)

    [request] = seen
    assert request.method == "GET"
    assert str(request.url) == f"{API_BASE}/v1beta/{OPERATION}"
    assert request.headers["x-goog-api-key"] == API_KEY
    assert not request.url.query
    assert snapshot.state is ProviderState.PROCESSING
    assert snapshot.progress is None
    assert snapshot.output_urls == []


@pytest.mark.parametrize(
    "name",
    [
        "",
        "abc123",
        "operations/abc123",
        f"/{OPERATION}",
        f"{OPERATION}/",
        f"{OPERATION}/../../files/x",
        "models/../operations/abc",
        "models/veo/operations/..",
        f"{OPERATION}?alt=media",
        f"{OPERATION}#x",
        f"{OPERATION}%2F..",
        f"{OPERATION}:cancel",
        f"models/{MODEL}/operations/ab c",
        "https://evil.test/v1beta/x",
        "files/abc/operations/x",
    ],
)
async def test_get_rejects_a_name_that_is_not_an_operation_without_a_request(
    make_provider: ProviderFactory, name: str
) -> None:
    with pytest.raises(ProviderRejected, match="operation name"):
        await make_provider(no_requests).get(name, model_path=MODEL)


async def test_done_operation_yields_its_video_uris_in_order(
    make_provider: ProviderFactory,
) -> None:
    other = f"{API_BASE}/v1beta/files/file-2:download?alt=media"
    body = finished(generatedSamples=[sample(VIDEO_URI), sample(other), sample(VIDEO_URI)])

    snapshot = await make_provider(answer(body)).get(OPERATION, model_path=MODEL)

    assert snapshot.state is ProviderState.SUCCEEDED
    assert snapshot.provider_status == "succeeded"
    assert snapshot.output_urls == [VIDEO_URI, other]
    assert snapshot.error is None
    assert snapshot.progress == 1.0
    assert snapshot.compute_seconds is None


async def test_done_operation_with_an_error_fails_with_code_and_message(
    make_provider: ProviderFactory,
) -> None:
    body = operation(done=True, error={"code": 13, "message": "Internal error while generating"})

    snapshot = await make_provider(answer(body)).get(OPERATION, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "failed"
    assert snapshot.error == "Veo operation failed (code 13): Internal error while generating"
    assert snapshot.output_urls == []


async def test_safety_filtered_operation_fails_with_the_reasons(
    make_provider: ProviderFactory,
) -> None:
    reasons = [
        "We encountered an issue with the audio for your prompt.",
        "Your prompt may violate our policies.",
    ]
    body = finished(raiMediaFilteredCount=2, raiMediaFilteredReasons=reasons)

    snapshot = await make_provider(answer(body)).get(OPERATION, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "filtered"
    assert snapshot.error == f"blocked by safety filters: {reasons[0]}; {reasons[1]}"


async def test_safety_filtered_operation_without_reasons_still_says_filtered(
    make_provider: ProviderFactory,
) -> None:
    body = finished(generatedSamples=[], raiMediaFilteredCount=1)

    snapshot = await make_provider(answer(body)).get(OPERATION, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "filtered"
    assert snapshot.error is not None and "safety filters" in snapshot.error


async def test_partly_filtered_operation_succeeds_with_the_videos_left(
    make_provider: ProviderFactory,
) -> None:
    body = finished(
        generatedSamples=[sample(VIDEO_URI)],
        raiMediaFilteredCount=1,
        raiMediaFilteredReasons=["one video was filtered"],
    )

    snapshot = await make_provider(answer(body)).get(OPERATION, model_path=MODEL)

    assert snapshot.state is ProviderState.SUCCEEDED
    assert snapshot.output_urls == [VIDEO_URI]


@pytest.mark.parametrize(
    "body",
    [
        operation(done=True),
        operation(done=True, response={}),
        finished(),
        finished(generatedSamples=[]),
    ],
    ids=["no-response", "empty-response", "empty-result", "no-samples"],
)
async def test_done_operation_with_nothing_in_it_fails_clearly(
    make_provider: ProviderFactory, body: dict[str, Any]
) -> None:
    snapshot = await make_provider(answer(body)).get(OPERATION, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "failed"
    assert snapshot.error == "Veo finished without a video, a safety-filter reason or an error"


async def test_samples_without_a_downloadable_uri_fail_clearly(
    make_provider: ProviderFactory,
) -> None:
    body = finished(
        generatedSamples=[{"video": {"encodedVideo": "AAAA"}}, sample("gs://bucket/video.mp4")]
    )

    snapshot = await make_provider(answer(body)).get(OPERATION, model_path=MODEL)

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.error == "Veo finished, but no sample holds a video URI"


async def test_2xx_that_is_not_json_is_unavailable(make_provider: ProviderFactory) -> None:
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        await make_provider(answer(text="<html>gateway</html>")).get(OPERATION, model_path=MODEL)


@pytest.mark.parametrize("body", [{"done": True}, [], {"name": ""}])
async def test_2xx_json_that_is_not_an_operation_is_unavailable(
    make_provider: ProviderFactory, body: Any
) -> None:
    with pytest.raises(ProviderUnavailable, match="no operation"):
        await make_provider(answer(body)).get(OPERATION, model_path=MODEL)


# --- cancel, webhooks, downloads --------------------------------------------------------------


async def test_cancel_sends_nothing_and_logs_that_veo_cannot_cancel(
    make_provider: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="reelflow.providers.veo"):
        await make_provider(no_requests).cancel(OPERATION, model_path=MODEL)

    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert OPERATION in record.getMessage()
    assert "cannot be cancelled" in record.getMessage()


async def test_every_webhook_is_refused(make_provider: ProviderFactory) -> None:
    body = json.dumps(finished(generatedSamples=[sample(VIDEO_URI)])).encode()

    with pytest.raises(WebhookVerificationError, match="Veo does not send webhooks"):
        await make_provider(no_requests).verify_webhook({"content-type": "application/json"}, body)


@pytest.mark.parametrize(
    "url",
    [
        VIDEO_URI,
        "https://GenerativeLanguage.test/download/v1beta/files/f:download?alt=media",
        "https://generativelanguage.test:443/v1beta/files/f:download?alt=media",
    ],
)
async def test_download_headers_carry_the_key_to_the_api_host(
    make_provider: ProviderFactory, url: str
) -> None:
    assert make_provider(no_requests).download_headers(url) == {"x-goog-api-key": API_KEY}


@pytest.mark.parametrize(
    "url",
    [
        "https://storage.googleapis.com/bucket/video.mp4",
        "http://generativelanguage.test/v1beta/files/f:download?alt=media",
        "https://generativelanguage.test:8443/v1beta/files/f:download?alt=media",
        "https://generativelanguage.test.evil.test/v1beta/files/f",
        "https://generativelanguage.test@evil.test/v1beta/files/f",
        "gs://bucket/video.mp4",
        "/v1beta/files/f:download?alt=media",
        "https://generativelanguage.test:99999/x",
        "",
    ],
)
async def test_download_headers_never_send_the_key_elsewhere(
    make_provider: ProviderFactory, url: str
) -> None:
    assert make_provider(no_requests).download_headers(url) == {}


async def test_download_headers_follow_an_api_base_with_a_port() -> None:
    async with httpx.AsyncClient() as client:
        provider = VeoProvider(http=client, api_base="http://127.0.0.1:8081", api_key=API_KEY)
        uri = "http://127.0.0.1:8081/v1beta/files/f:download?alt=media"
        assert provider.download_headers(uri) == {"x-goog-api-key": API_KEY}
        assert provider.download_headers("http://127.0.0.1:8082/v1beta/files/f") == {}


# --- HTTP errors ------------------------------------------------------------------------------


async def test_400_is_rejected_with_googles_status_and_message(
    make_provider: ProviderFactory,
) -> None:
    body = google_error(400, "INVALID_ARGUMENT", "durationSeconds must be between 4 and 8")

    with pytest.raises(ProviderRejected) as caught:
        await make_provider(answer(body, status=400)).create(
            model_path=MODEL, inputs={"prompt": "x", "durationSeconds": 30}, webhook_url=None
        )

    assert str(caught.value) == (
        f"Veo POST /v1beta/models/{MODEL}:predictLongRunning answered 400: "
        "INVALID_ARGUMENT: durationSeconds must be between 4 and 8"
    )


async def test_403_is_rejected_with_googles_message(make_provider: ProviderFactory) -> None:
    body = google_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")

    with pytest.raises(ProviderRejected, match="403: PERMISSION_DENIED: Method doesn't allow"):
        await make_provider(answer(body, status=403)).get(OPERATION, model_path=MODEL)


async def test_4xx_without_google_error_json_is_rejected_with_its_text(
    make_provider: ProviderFactory,
) -> None:
    with pytest.raises(ProviderRejected, match="404: Not Found"):
        await make_provider(answer(status=404, text="Not Found")).get(OPERATION, model_path=MODEL)


async def test_429_is_rate_limited_with_retry_after_seconds(
    make_provider: ProviderFactory,
) -> None:
    body = google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
    handler = answer(body, status=429, headers={"Retry-After": "7"})

    with pytest.raises(ProviderRateLimited, match="RESOURCE_EXHAUSTED") as caught:
        await make_provider(handler).get(OPERATION, model_path=MODEL)

    assert caught.value.retry_after_s == 7


async def test_429_retry_after_may_be_an_http_date(make_provider: ProviderFactory) -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    with pytest.raises(ProviderRateLimited) as caught:
        await make_provider(answer(status=429, headers={"Retry-After": later})).get(
            OPERATION, model_path=MODEL
        )

    assert caught.value.retry_after_s == pytest.approx(120, abs=3)


async def test_429_without_retry_after_takes_googles_retry_info(
    make_provider: ProviderFactory,
) -> None:
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27.5s"},
    ]
    body = google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", details=details)

    with pytest.raises(ProviderRateLimited) as caught:
        await make_provider(answer(body, status=429)).get(OPERATION, model_path=MODEL)

    assert caught.value.retry_after_s == 27.5


@pytest.mark.parametrize(
    "body",
    [
        google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded."),
        google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded.",
            details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"}],
        ),
        None,
    ],
    ids=["no-details", "bad-delay", "no-body"],
)
async def test_429_without_a_usable_hint_has_none(
    make_provider: ProviderFactory, body: Any
) -> None:
    handler = answer(body, status=429) if body else answer(status=429, text="")

    with pytest.raises(ProviderRateLimited) as caught:
        await make_provider(handler).get(OPERATION, model_path=MODEL)

    assert caught.value.retry_after_s is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_unavailable(make_provider: ProviderFactory, status: int) -> None:
    handler = answer(google_error(status, "UNAVAILABLE", "The model is overloaded."), status=status)

    with pytest.raises(ProviderUnavailable, match=f"{status}: UNAVAILABLE") as caught:
        await make_provider(handler).get(OPERATION, model_path=MODEL)

    assert not isinstance(caught.value, ProviderRateLimited)


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out")]
)
async def test_network_errors_and_timeouts_are_unavailable(
    make_provider: ProviderFactory, error: httpx.HTTPError
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(ProviderUnavailable):
        await make_provider(handler).create(
            model_path=MODEL, inputs={"prompt": "x"}, webhook_url=None
        )


# --- the key stays secret ---------------------------------------------------------------------


def _echo_key(status: int) -> Handler:
    """A misbehaving server that puts the request's key into its error."""

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["x-goog-api-key"]
        return httpx.Response(status, json=google_error(status, "X", f"bad key {key}"))

    return handler


def _refuse_with_key(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"refused {request.headers['x-goog-api-key']}")


def _exception_chain(error: BaseException) -> list[BaseException]:
    """The exceptions a traceback shows (and logging, Temporal and error trackers record)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return chain


@pytest.mark.parametrize(
    "handler",
    [_echo_key(400), _echo_key(403), _echo_key(429), _echo_key(500), _refuse_with_key],
    ids=["400", "403", "429", "500", "network"],
)
async def test_no_error_or_log_line_contains_the_key(
    make_provider: ProviderFactory, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    provider = make_provider(handler)

    async def get() -> None:
        await provider.get(OPERATION, model_path=MODEL)

    async def create() -> None:
        await provider.create(model_path=MODEL, inputs={"prompt": "x"}, webhook_url="https://h")

    with caplog.at_level(logging.DEBUG):
        for call in (get, create):
            with pytest.raises(ProviderError) as caught:
                await call()
            for error in _exception_chain(caught.value):
                assert API_KEY not in str(error)
                assert API_KEY not in repr(error)

    assert API_KEY not in caplog.text


async def test_successful_calls_log_nothing_secret(
    make_provider: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    provider = make_provider(answer(finished(generatedSamples=[sample(VIDEO_URI)])))

    with caplog.at_level(logging.DEBUG):
        await provider.create(model_path=MODEL, inputs={"prompt": "x"}, webhook_url="https://h")
        await provider.get(OPERATION, model_path=MODEL)
        await provider.cancel(OPERATION, model_path=MODEL)

    assert caplog.records
    assert API_KEY not in caplog.text


async def test_repr_does_not_contain_the_key(make_provider: ProviderFactory) -> None:
    provider = make_provider(no_requests)
    assert API_KEY not in repr(provider)
    assert API_BASE in repr(provider)


async def test_constructor_requires_a_key_and_an_http_base() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="key"):
            VeoProvider(http=client, api_base=API_BASE, api_key="")
        with pytest.raises(ValueError, match="http"):
            VeoProvider(http=client, api_base="generativelanguage.test", api_key=API_KEY)
