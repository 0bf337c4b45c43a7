"""ReplicateProvider against a mocked Replicate API, and Standard Webhooks verification."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from reelflow.providers.base import Provider
from reelflow.providers.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    WebhookVerificationError,
)
from reelflow.providers.replicate import ReplicateProvider
from reelflow.providers.signatures import SignatureMismatchError, verify_standard_webhook
from reelflow.types import ProviderState
from tests.provider_http import (
    Handler,
    MockHttp,
    answer,
    echo_authorization,
    refuse_echoing_authorization,
)

API_BASE = "https://api.replicate.test"
TOKEN = "r8_secret-token-value"
SECRET = "whsec_" + base64.b64encode(b"replicate-signing-key-0001").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"replicate-signing-key-0002").decode()
VIDEO_URL = "https://replicate.delivery/xezq/abc/output.mp4"

ProviderFactory = Callable[..., ReplicateProvider]


def prediction(**fields: Any) -> dict[str, Any]:
    """A prediction as Replicate returns it, with `fields` overriding the defaults."""
    return {
        "id": "ufawqhfynnddngldkgtslldrkq",
        "model": "bytedance/seedance-1-pro",
        "version": "hidden",
        "input": {"prompt": "a fox"},
        "logs": "",
        "output": None,
        "data_removed": False,
        "error": None,
        "status": "starting",
        "urls": {},
    } | fields


@pytest.fixture
def make_provider(mock_http: MockHttp) -> ProviderFactory:
    def factory(handler: Handler, **kwargs: Any) -> ReplicateProvider:
        return ReplicateProvider(
            http=mock_http(handler), api_base=API_BASE + "/", token=TOKEN, **kwargs
        )

    return factory


def signed_headers(
    body: bytes,
    *,
    secret: str = SECRET,
    msg_id: str = "msg_2mLQkMZ3bNy8eRPAhzsuHWa1wZw",
    at: datetime | None = None,
) -> dict[str, str]:
    """Headers Replicate would send with `body`, signed with `secret` at time `at`."""
    timestamp = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, timestamp, body.decode()),
    }


class FakeClock:
    """Monotonic seconds that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_replicate_provider_satisfies_the_provider_protocol(
    make_provider: ProviderFactory,
) -> None:
    provider: Provider = make_provider(answer(prediction()))
    assert provider.name == "replicate"


# --- request shapes ---------------------------------------------------------------------------


async def test_create_by_model_posts_to_model_predictions_with_webhook_and_filter(
    make_provider: ProviderFactory,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=prediction())

    provider = make_provider(handler)
    snapshot = await provider.create(
        model_path="bytedance/seedance-1-pro",
        inputs={"prompt": "a fox", "duration": 5},
        webhook_url="https://reelflow.test/api/webhooks/job/j1",
    )

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{API_BASE}/v1/models/bytedance/seedance-1-pro/predictions"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "input": {"prompt": "a fox", "duration": 5},
        "webhook": "https://reelflow.test/api/webhooks/job/j1",
        "webhook_events_filter": ["start", "logs", "completed"],
    }
    assert snapshot.provider_job_id == "ufawqhfynnddngldkgtslldrkq"
    assert snapshot.state is ProviderState.QUEUED


async def test_create_by_version_posts_version_to_predictions(
    make_provider: ProviderFactory,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=prediction())

    version = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
    provider = make_provider(handler)
    await provider.create(
        model_path=f"someone/community-model:{version}", inputs={"prompt": "x"}, webhook_url=None
    )

    [request] = seen
    assert str(request.url) == f"{API_BASE}/v1/predictions"
    # Polling jobs get no webhook fields at all.
    assert json.loads(request.content) == {"version": version, "input": {"prompt": "x"}}


@pytest.mark.parametrize("model_path", ["", "seedance", "a/b/c", "owner/name:", "owner/na me"])
async def test_create_with_malformed_model_path_is_rejected_without_a_request(
    make_provider: ProviderFactory, model_path: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    provider = make_provider(handler)
    with pytest.raises(ProviderRejected, match="model path"):
        await provider.create(model_path=model_path, inputs={}, webhook_url=None)


async def test_get_fetches_the_prediction_by_id(make_provider: ProviderFactory) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=prediction(status="processing"))

    snapshot = await make_provider(handler).get("ufawqhfynnddngldkgtslldrkq")

    [request] = seen
    assert request.method == "GET"
    assert str(request.url) == f"{API_BASE}/v1/predictions/ufawqhfynnddngldkgtslldrkq"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert snapshot.state is ProviderState.PROCESSING


async def test_get_quotes_the_id_so_it_cannot_reach_another_endpoint(
    make_provider: ProviderFactory,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=prediction())

    await make_provider(handler).get("../models?x=1")

    assert seen[0].url.raw_path == b"/v1/predictions/..%2Fmodels%3Fx%3D1"


async def test_get_with_empty_id_is_rejected(make_provider: ProviderFactory) -> None:
    with pytest.raises(ProviderRejected):
        await make_provider(answer(prediction())).get("")


async def test_cancel_posts_to_the_cancel_endpoint(make_provider: ProviderFactory) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=prediction(status="canceled"))

    await make_provider(handler).cancel("ufawqhfynnddngldkgtslldrkq")

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{API_BASE}/v1/predictions/ufawqhfynnddngldkgtslldrkq/cancel"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_cancel_of_a_finished_prediction_is_not_an_error(
    make_provider: ProviderFactory,
) -> None:
    finished = prediction(status="succeeded", output=VIDEO_URL)
    await make_provider(answer(finished)).cancel("ufawqhfynnddngldkgtslldrkq")


# --- finding a prediction an earlier attempt created ------------------------------------------

SEEDANCE = "bytedance/seedance-1-pro"
HOOK = "https://reelflow.test/api/webhooks/job/j1?token=t1"
OTHER_HOOK = "https://reelflow.test/api/webhooks/job/j2?token=t2"
# Not on a whole second: it is sent rounded down.
SINCE = datetime(2025, 6, 1, 12, 0, 30, 500000, tzinfo=UTC)


def listed(prediction_id: str, *, minutes: float, **fields: Any) -> dict[str, Any]:
    """A list result created `minutes` after SINCE (before it when negative).

    Like Replicate's, it shows no `webhook` (and no `logs`): `webhook` goes in `fields` only to
    say what fetching the prediction shows, and `FakeReplicate` strips it from the list.
    """
    created_at = (SINCE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return prediction(id=prediction_id, model=SEEDANCE, created_at=created_at) | fields


def page(*results: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    return {"next": next_url, "previous": None, "results": list(results)}


class FakeReplicate:
    """Replicate's prediction list, as pages by cursor, and its predictions by id.

    List results leave out `webhook` and `logs`, as Replicate's do; a fetch shows everything.
    Every request is recorded.
    """

    def __init__(self, pages: dict[str | None, dict[str, Any]]) -> None:
        self.pages = pages
        self.predictions = {
            result["id"]: result for listing in pages.values() for result in listing["results"]
        }
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v1/predictions":
            listing = self.pages[request.url.params.get("cursor")]
            results = [
                {k: v for k, v in result.items() if k not in {"webhook", "logs"}}
                for result in listing["results"]
            ]
            return httpx.Response(200, json=listing | {"results": results})
        prediction_id = request.url.path.removeprefix("/v1/predictions/")
        return httpx.Response(200, json=self.predictions[prediction_id])

    @property
    def lists(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/v1/predictions"]

    @property
    def fetched(self) -> list[str]:
        return [
            r.url.path.removeprefix("/v1/predictions/")
            for r in self.requests
            if r.url.path != "/v1/predictions"
        ]


async def find(
    provider: ReplicateProvider, *, model_path: str = SEEDANCE, webhook_url: str | None = HOOK
) -> Any:
    return await provider.find_existing(
        model_path=model_path, webhook_url=webhook_url, created_after=SINCE
    )


async def test_find_existing_returns_the_newest_prediction_created_with_the_webhook(
    make_provider: ProviderFactory,
) -> None:
    api = FakeReplicate(
        {
            None: page(
                listed("other-model", minutes=9, model="minimax/video-01", webhook=HOOK),
                listed("other-hook", minutes=8, webhook=OTHER_HOOK),
                listed("no-hook", minutes=7),
                listed("ours", minutes=6, webhook=HOOK, status="processing"),
                listed("ours-older", minutes=5, webhook=HOOK),
            )
        }
    )

    found = await find(make_provider(api))

    assert found is not None
    assert (found.provider_job_id, found.state) == ("ours", ProviderState.PROCESSING)
    [listing] = api.lists
    assert listing.method == "GET"
    assert str(listing.url) == f"{API_BASE}/v1/predictions?created_after=2025-06-01T12%3A00%3A30Z"
    assert api.fetched == ["other-hook", "no-hook", "ours"]
    assert {r.headers["authorization"] for r in api.requests} == {f"Bearer {TOKEN}"}


async def test_find_existing_without_a_prediction_created_with_the_webhook_is_none(
    make_provider: ProviderFactory,
) -> None:
    api = FakeReplicate(
        {None: page(listed("a", minutes=2, webhook=OTHER_HOOK), listed("b", minutes=1))}
    )

    assert await find(make_provider(api)) is None
    assert api.fetched == ["a", "b"]


async def test_find_existing_ignores_predictions_of_other_models_or_versions(
    make_provider: ProviderFactory,
) -> None:
    pinned = f"{SEEDANCE}:{'a' * 64}"
    api = FakeReplicate(
        {
            None: page(
                listed("lite", minutes=3, model="bytedance/seedance-1-lite", webhook=HOOK),
                listed("other-version", minutes=2, version="b" * 64, webhook=HOOK),
                listed("unknown-model", minutes=1, model=None, webhook=HOOK),
            )
        }
    )

    assert await find(make_provider(api), model_path=pinned) is None
    assert api.fetched == []


async def test_find_existing_follows_the_next_cursor_but_only_to_replicate(
    make_provider: ProviderFactory,
) -> None:
    elsewhere = "https://elsewhere.test/v1/predictions?cursor=cD0y&created_after=x"
    api = FakeReplicate(
        {
            None: page(listed("newer", minutes=4, webhook=OTHER_HOOK), next_url=elsewhere),
            "cD0y": page(listed("ours", minutes=3, webhook=HOOK)),
        }
    )

    found = await find(make_provider(api))

    assert found is not None and found.provider_job_id == "ours"
    assert [str(r.url) for r in api.lists] == [
        f"{API_BASE}/v1/predictions?created_after=2025-06-01T12%3A00%3A30Z",
        f"{API_BASE}/v1/predictions?created_after=2025-06-01T12%3A00%3A30Z&cursor=cD0y",
    ]


async def test_find_existing_stops_at_the_first_prediction_older_than_created_after(
    make_provider: ProviderFactory,
) -> None:
    # As if Replicate had ignored `created_after`: the walk stops on its own.
    api = FakeReplicate(
        {
            None: page(
                listed("newer", minutes=1, webhook=OTHER_HOOK),
                listed("older", minutes=-1, webhook=HOOK),
                next_url=f"{API_BASE}/v1/predictions?cursor=cD0z",
            ),
            "cD0z": page(listed("much-older", minutes=-60, webhook=HOOK)),
        }
    )

    assert await find(make_provider(api)) is None
    assert len(api.lists) == 1
    assert api.fetched == ["newer"]


async def test_find_existing_reads_at_most_three_pages(
    make_provider: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def next_to(cursor: str) -> str:
        return f"{API_BASE}/v1/predictions?cursor={cursor}"

    api = FakeReplicate(
        {
            None: page(listed("p1", minutes=4, model="x/y"), next_url=next_to("c2")),
            "c2": page(listed("p2", minutes=3, model="x/y"), next_url=next_to("c3")),
            "c3": page(listed("p3", minutes=2, model="x/y"), next_url=next_to("c4")),
            "c4": page(listed("ours", minutes=1, webhook=HOOK)),
        }
    )

    assert await find(make_provider(api)) is None
    assert len(api.lists) == 3
    assert "after 3 pages" in caplog.text


async def test_find_existing_fetches_at_most_twenty_predictions(
    make_provider: ProviderFactory, caplog: pytest.LogCaptureFixture
) -> None:
    others = [listed(f"p{n:02}", minutes=30 - n, webhook=OTHER_HOOK) for n in range(20)]
    api = FakeReplicate({None: page(*others, listed("ours", minutes=1, webhook=HOOK))})

    assert await find(make_provider(api)) is None
    assert len(api.fetched) == 20
    assert "an older one may exist" in caplog.text
    assert HOOK not in caplog.text  # the webhook URL holds the job's token


async def test_find_existing_for_a_polling_job_is_none_without_a_request(
    make_provider: ProviderFactory,
) -> None:
    assert await find(make_provider(no_api), webhook_url=None) is None


async def test_find_existing_needs_a_timezone_aware_created_after(
    make_provider: ProviderFactory,
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await make_provider(no_api).find_existing(
            model_path=SEEDANCE, webhook_url=HOOK, created_after=datetime(2025, 6, 1)
        )


@pytest.mark.parametrize("body", [[], {"results": None}, {"next": None}])
async def test_find_existing_when_the_list_is_not_a_page_is_unavailable(
    make_provider: ProviderFactory, body: Any
) -> None:
    with pytest.raises(ProviderUnavailable, match="returned no page"):
        await find(make_provider(answer(body)))


async def test_find_existing_skips_list_results_without_id_or_creation_time(
    make_provider: ProviderFactory,
) -> None:
    api = FakeReplicate(
        {
            None: page(
                listed("", minutes=3, webhook=HOOK),
                listed("bad-time", minutes=2, created_at="yesterday", webhook=HOOK),
                listed("ours", minutes=1, webhook=HOOK),
            )
        }
    )

    found = await find(make_provider(api))

    assert found is not None and found.provider_job_id == "ours"
    assert api.fetched == ["ours"]


async def test_find_existing_when_rate_limited_says_so(make_provider: ProviderFactory) -> None:
    throttled = {"title": "Request was throttled.", "detail": "Try again.", "status": 429}
    provider = make_provider(answer(throttled, 429, headers={"retry-after": "3"}))

    with pytest.raises(ProviderRateLimited) as caught:
        await find(provider)
    assert caught.value.retry_after_s == 3


# --- prediction parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("starting", ProviderState.QUEUED),
        ("processing", ProviderState.PROCESSING),
        ("succeeded", ProviderState.SUCCEEDED),
        ("failed", ProviderState.FAILED),
        ("canceled", ProviderState.CANCELED),
        ("aborted", ProviderState.FAILED),
    ],
)
async def test_every_replicate_status_maps_to_a_state(
    make_provider: ProviderFactory, status: str, state: ProviderState
) -> None:
    data = prediction(status=status, output=VIDEO_URL if status == "succeeded" else None)

    snapshot = await make_provider(answer(data)).get("p1")

    assert snapshot.state is state
    assert snapshot.provider_status == status


async def test_aborted_prediction_fails_with_an_error_saying_aborted(
    make_provider: ProviderFactory,
) -> None:
    snapshot = await make_provider(answer(prediction(status="aborted"))).get("p1")

    assert snapshot.state.terminal
    assert snapshot.error is not None and "aborted" in snapshot.error


async def test_unknown_status_is_treated_as_still_processing(
    make_provider: ProviderFactory,
) -> None:
    snapshot = await make_provider(answer(prediction(status="warming"))).get("p1")

    assert snapshot.state is ProviderState.PROCESSING
    assert snapshot.provider_status == "warming"


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        (VIDEO_URL, [VIDEO_URL]),
        (
            [VIDEO_URL, "a caption", 3, None, "http://replicate.delivery/b.mp4", VIDEO_URL],
            [VIDEO_URL, "http://replicate.delivery/b.mp4"],
        ),
        (
            {"video": VIDEO_URL, "seed": 7, "frames": ["https://replicate.delivery/f.png"]},
            [VIDEO_URL, "https://replicate.delivery/f.png"],
        ),
    ],
    ids=["string", "list-with-non-urls", "object"],
)
async def test_succeeded_output_yields_its_http_urls(
    make_provider: ProviderFactory, output: Any, urls: list[str]
) -> None:
    snapshot = await make_provider(answer(prediction(status="succeeded", output=output))).get("p")

    assert snapshot.state is ProviderState.SUCCEEDED
    assert snapshot.output_urls == urls
    assert snapshot.error is None


@pytest.mark.parametrize(
    "output", [None, [], "not a url", ["data:video/mp4;base64,AAAA", "ftp://x/y"], {"n": 1}]
)
async def test_succeeded_without_an_output_url_is_a_clear_failure(
    make_provider: ProviderFactory, output: Any
) -> None:
    snapshot = await make_provider(answer(prediction(status="succeeded", output=output))).get("p")

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "succeeded"
    assert snapshot.output_urls == []
    assert snapshot.error is not None and "no http(s) URL" in snapshot.error


async def test_succeeded_with_data_removed_fails_saying_outputs_were_deleted(
    make_provider: ProviderFactory,
) -> None:
    # What the persist step's re-fetch sees once the hour is up: output gone, no new URL.
    data = prediction(status="succeeded", output=None, data_removed=True)

    snapshot = await make_provider(answer(data)).get("p1")

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.provider_status == "succeeded"
    assert snapshot.output_urls == []
    assert snapshot.error is not None and "data_removed" in snapshot.error


async def test_outputs_of_unfinished_predictions_are_not_reported(
    make_provider: ProviderFactory,
) -> None:
    data = prediction(status="processing", output=[VIDEO_URL])

    snapshot = await make_provider(answer(data)).get("p1")

    assert snapshot.output_urls == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("CUDA out of memory", "CUDA out of memory"),
        ({"code": "E1001", "message": "NSFW"}, '{"code": "E1001", "message": "NSFW"}'),
    ],
)
async def test_failed_prediction_carries_its_error_as_text(
    make_provider: ProviderFactory, error: Any, expected: str
) -> None:
    snapshot = await make_provider(answer(prediction(status="failed", error=error))).get("p1")

    assert snapshot.state is ProviderState.FAILED
    assert snapshot.error == expected


async def test_failed_prediction_without_error_still_explains(
    make_provider: ProviderFactory,
) -> None:
    snapshot = await make_provider(answer(prediction(status="failed"))).get("p1")

    assert snapshot.error is not None and "failed" in snapshot.error


@pytest.mark.parametrize(
    ("logs", "progress"),
    [
        (None, None),
        ("", None),
        ("loading weights\nstarting inference", None),
        (" 10%|█         | 5/50 [00:01<00:09]\r 46%|████▌     | 23/50 [00:05<00:06]", 0.46),
        ("step 3/12\nstep 9/12\nsaving video", 0.75),
        ("Generating: 37.5%", 0.375),
        ("read /data/2024/05/01 config", None),
        ("step 3/12\nbatch 14/12", 0.25),
        ("progress 250% of quota", None),
    ],
)
async def test_progress_comes_from_the_last_percentage_or_step_in_the_logs(
    make_provider: ProviderFactory, logs: str | None, progress: float | None
) -> None:
    snapshot = await make_provider(answer(prediction(status="processing", logs=logs))).get("p1")

    assert snapshot.progress == (pytest.approx(progress) if progress is not None else None)


async def test_succeeded_prediction_is_fully_done(make_provider: ProviderFactory) -> None:
    data = prediction(status="succeeded", output=VIDEO_URL, logs="step 49/50")

    snapshot = await make_provider(answer(data)).get("p1")

    assert snapshot.progress == 1.0


# --- HTTP errors ------------------------------------------------------------------------------


async def test_429_is_rate_limited_with_retry_after_seconds(
    make_provider: ProviderFactory,
) -> None:
    body = {"title": "Request was throttled", "detail": "Expected available in 7 seconds."}
    handler = answer(body, status=429, headers={"Retry-After": "7"})

    with pytest.raises(ProviderRateLimited, match="Expected available in 7 seconds") as caught:
        await make_provider(handler).get("p1")

    assert caught.value.retry_after_s == 7


async def test_429_retry_after_may_be_an_http_date(make_provider: ProviderFactory) -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    handler = answer(status=429, headers={"Retry-After": later})

    with pytest.raises(ProviderRateLimited) as caught:
        await make_provider(handler).get("p1")

    assert caught.value.retry_after_s == pytest.approx(120, abs=3)


@pytest.mark.parametrize("header", [None, "soon"])
async def test_429_without_a_usable_retry_after_has_no_hint(
    make_provider: ProviderFactory, header: str | None
) -> None:
    headers = {"Retry-After": header} if header else {}
    handler = answer(status=429, headers=headers)

    with pytest.raises(ProviderRateLimited) as caught:
        await make_provider(handler).get("p1")

    assert caught.value.retry_after_s is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_unavailable(make_provider: ProviderFactory, status: int) -> None:
    handler = answer({"detail": "Internal server error"}, status=status)

    with pytest.raises(ProviderUnavailable, match=str(status)) as caught:
        await make_provider(handler).get("p1")

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
        await make_provider(handler).create(model_path="a/b", inputs={}, webhook_url=None)


async def test_422_is_rejected_with_the_invalid_fields(make_provider: ProviderFactory) -> None:
    body = {
        "title": "Input validation failed",
        "detail": "- input.duration: duration must be one of the following: 5, 10",
        "status": 422,
        "invalid_fields": [
            {"type": "enum", "field": "input.duration", "description": "must be 5 or 10"},
            {"type": "required", "field": "", "description": "input is required"},
        ],
    }

    with pytest.raises(ProviderRejected) as caught:
        await make_provider(answer(body, status=422)).create(
            model_path="a/b", inputs={"duration": 7}, webhook_url=None
        )

    message = str(caught.value)
    assert "422" in message
    assert "duration must be one of the following" in message
    assert "input.duration: must be 5 or 10" in message
    assert "input is required" in message


async def test_401_is_rejected_with_replicates_detail(make_provider: ProviderFactory) -> None:
    body = {"title": "Unauthenticated", "detail": "You did not pass a valid token", "status": 401}

    with pytest.raises(ProviderRejected, match="You did not pass a valid token"):
        await make_provider(answer(body, status=401)).get("p1")


async def test_4xx_without_problem_json_is_rejected_with_its_text(
    make_provider: ProviderFactory,
) -> None:
    with pytest.raises(ProviderRejected, match="404: Not found."):
        await make_provider(answer(status=404, text="Not found.")).get("p1")


async def test_2xx_that_is_not_json_is_unavailable(make_provider: ProviderFactory) -> None:
    with pytest.raises(ProviderUnavailable, match="not JSON"):
        await make_provider(answer(text="<html>gateway</html>")).get("p1")


async def test_2xx_json_that_is_not_a_prediction_is_unavailable(
    make_provider: ProviderFactory,
) -> None:
    with pytest.raises(ProviderUnavailable, match="no prediction"):
        await make_provider(answer({"results": []})).get("p1")


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
async def test_no_error_message_contains_the_token(
    make_provider: ProviderFactory, handler: Handler
) -> None:
    with pytest.raises(ProviderError) as caught:
        await make_provider(handler).get("p1")

    error: BaseException | None = caught.value
    while error is not None:
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error)
        error = error.__cause__


async def test_repr_does_not_contain_the_token(make_provider: ProviderFactory) -> None:
    assert TOKEN not in repr(make_provider(answer(prediction())))


async def test_constructor_requires_a_token() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="token"):
            ReplicateProvider(http=client, api_base=API_BASE, token="")


# --- webhooks through the provider ------------------------------------------------------------


def no_api(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request {request.method} {request.url}")


async def test_valid_webhook_is_parsed_into_a_snapshot(make_provider: ProviderFactory) -> None:
    body = json.dumps(prediction(status="succeeded", output=VIDEO_URL)).encode()
    provider = make_provider(no_api, webhook_secret=SECRET)

    snapshot = await provider.verify_webhook(signed_headers(body), body)

    assert snapshot.state is ProviderState.SUCCEEDED
    assert snapshot.output_urls == [VIDEO_URL]


async def test_webhook_with_tampered_body_is_rejected(make_provider: ProviderFactory) -> None:
    body = json.dumps(prediction(status="failed")).encode()
    tampered = body.replace(b'"failed"', b'"succeeded"')
    provider = make_provider(no_api, webhook_secret=SECRET)

    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        await provider.verify_webhook(signed_headers(body), tampered)


async def test_webhook_signed_with_another_secret_is_rejected(
    make_provider: ProviderFactory,
) -> None:
    body = json.dumps(prediction()).encode()
    provider = make_provider(no_api, webhook_secret=SECRET)

    with pytest.raises(WebhookVerificationError):
        await provider.verify_webhook(signed_headers(body, secret=OTHER_SECRET), body)


async def test_stale_webhook_is_rejected(make_provider: ProviderFactory) -> None:
    body = json.dumps(prediction()).encode()
    six_minutes_ago = datetime.now(UTC) - timedelta(minutes=6)
    provider = make_provider(no_api, webhook_secret=SECRET)

    with pytest.raises(WebhookVerificationError, match="too old"):
        await provider.verify_webhook(signed_headers(body, at=six_minutes_ago), body)


@pytest.mark.parametrize("dropped", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_webhook_missing_a_header_is_rejected(
    make_provider: ProviderFactory, dropped: str
) -> None:
    body = json.dumps(prediction()).encode()
    headers = signed_headers(body)
    del headers[dropped]
    provider = make_provider(no_api, webhook_secret=SECRET)

    with pytest.raises(WebhookVerificationError, match=dropped):
        await provider.verify_webhook(headers, body)


async def test_webhook_with_several_signatures_passes_when_one_matches(
    make_provider: ProviderFactory,
) -> None:
    body = json.dumps(prediction(status="processing")).encode()
    headers = signed_headers(body)
    wrong = signed_headers(body, secret=OTHER_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"{wrong} v1a,c2lnbmVk garbage {headers['webhook-signature']}"
    provider = make_provider(no_api, webhook_secret=SECRET)

    snapshot = await provider.verify_webhook(headers, body)

    assert snapshot.state is ProviderState.PROCESSING


async def test_signed_webhook_whose_body_is_not_a_prediction_is_rejected(
    make_provider: ProviderFactory,
) -> None:
    provider = make_provider(no_api, webhook_secret=SECRET)
    for body in (b"not json", b'{"hello": "world"}'):
        with pytest.raises(WebhookVerificationError, match="not a Replicate prediction"):
            await provider.verify_webhook(signed_headers(body), body)


class SecretEndpoint:
    """Replicate's `GET /v1/webhooks/default/secret`; tests change `key` to rotate it."""

    def __init__(self) -> None:
        self.key = SECRET
        self.calls = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "GET"
        assert request.url.path == "/v1/webhooks/default/secret"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        self.calls += 1
        await asyncio.sleep(0.01)  # long enough for concurrent webhooks to pile up
        return httpx.Response(200, json={"key": self.key})


async def test_secret_is_fetched_once_across_concurrent_webhooks(
    make_provider: ProviderFactory,
) -> None:
    endpoint = SecretEndpoint()
    provider = make_provider(endpoint)
    bodies = [json.dumps(prediction(id=f"p{i}")).encode() for i in range(10)]

    snapshots = await asyncio.gather(
        *(provider.verify_webhook(signed_headers(body), body) for body in bodies)
    )

    assert [s.provider_job_id for s in snapshots] == [f"p{i}" for i in range(10)]
    assert endpoint.calls == 1
    body = bodies[0]
    await provider.verify_webhook(signed_headers(body), body)
    assert endpoint.calls == 1


async def test_rotated_secret_is_refetched_once_the_cached_one_is_a_minute_old(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = SecretEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = json.dumps(prediction()).encode()
    await provider.verify_webhook(signed_headers(body), body)

    endpoint.key = OTHER_SECRET  # the account's secret is rotated
    clock.now += 61
    snapshot = await provider.verify_webhook(signed_headers(body, secret=OTHER_SECRET), body)

    assert snapshot.provider_job_id == "ufawqhfynnddngldkgtslldrkq"
    assert endpoint.calls == 2
    # The new secret is now the cached one.
    await provider.verify_webhook(signed_headers(body, secret=OTHER_SECRET), body)
    assert endpoint.calls == 2


async def test_bad_signature_does_not_refetch_a_secret_fetched_within_the_minute(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = SecretEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = json.dumps(prediction()).encode()
    await provider.verify_webhook(signed_headers(body), body)

    clock.now += 30
    with pytest.raises(SignatureMismatchError):
        await provider.verify_webhook(signed_headers(body, secret=OTHER_SECRET), body)

    assert endpoint.calls == 1


async def test_forged_webhooks_refetch_at_most_once_a_minute(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = SecretEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = json.dumps(prediction()).encode()
    await provider.verify_webhook(signed_headers(body), body)

    clock.now += 61
    for _ in range(5):
        with pytest.raises(SignatureMismatchError):
            await provider.verify_webhook(signed_headers(body, secret=OTHER_SECRET), body)

    assert endpoint.calls == 2


async def test_stale_webhook_does_not_trigger_a_secret_refetch(
    make_provider: ProviderFactory,
) -> None:
    endpoint, clock = SecretEndpoint(), FakeClock()
    provider = make_provider(endpoint, clock=clock)
    body = json.dumps(prediction()).encode()
    await provider.verify_webhook(signed_headers(body), body)

    clock.now += 61
    stale = signed_headers(body, at=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        await provider.verify_webhook(stale, body)

    assert endpoint.calls == 1


async def test_configured_secret_is_never_refetched(make_provider: ProviderFactory) -> None:
    clock = FakeClock()
    provider = make_provider(no_api, webhook_secret=SECRET, clock=clock)
    body = json.dumps(prediction()).encode()

    clock.now += 3600
    with pytest.raises(SignatureMismatchError):
        await provider.verify_webhook(signed_headers(body, secret=OTHER_SECRET), body)


async def test_secret_fetch_failure_is_unavailable_not_a_verification_error(
    make_provider: ProviderFactory,
) -> None:
    provider = make_provider(answer({"detail": "down"}, status=503))
    body = json.dumps(prediction()).encode()

    with pytest.raises(ProviderUnavailable):
        await provider.verify_webhook(signed_headers(body), body)


async def test_download_headers_are_empty_for_public_delivery_urls(
    make_provider: ProviderFactory,
) -> None:
    assert make_provider(no_api).download_headers(VIDEO_URL) == {}


# --- verify_standard_webhook ------------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
BODY = b'{"id": "p1", "status": "succeeded"}'


def test_verify_returns_the_webhook_id_and_matches_header_names_case_insensitively() -> None:
    headers = {k.title(): v for k, v in signed_headers(BODY, msg_id="msg_1", at=NOW).items()}

    assert verify_standard_webhook(secret=SECRET, headers=headers, body=BODY, now=NOW) == "msg_1"


def test_verify_accepts_a_secret_without_the_whsec_prefix() -> None:
    headers = signed_headers(BODY, at=NOW)
    bare = SECRET.removeprefix("whsec_")

    verify_standard_webhook(secret=bare, headers=headers, body=BODY, now=NOW)


@pytest.mark.parametrize(
    ("offset_s", "tolerance_s", "reason"),
    [(-301, 300, "too old"), (301, 300, "future"), (-61, 60, "too old")],
)
def test_verify_rejects_timestamps_outside_the_tolerance(
    offset_s: int, tolerance_s: int, reason: str
) -> None:
    headers = signed_headers(BODY, at=NOW + timedelta(seconds=offset_s))

    with pytest.raises(WebhookVerificationError, match=reason) as caught:
        verify_standard_webhook(
            secret=SECRET, headers=headers, body=BODY, tolerance_s=tolerance_s, now=NOW
        )

    assert not isinstance(caught.value, SignatureMismatchError)


@pytest.mark.parametrize("offset_s", [-300, 300])
def test_verify_accepts_timestamps_at_the_edge_of_the_tolerance(offset_s: int) -> None:
    headers = signed_headers(BODY, at=NOW + timedelta(seconds=offset_s))

    verify_standard_webhook(secret=SECRET, headers=headers, body=BODY, now=NOW)


@pytest.mark.parametrize("timestamp", ["", "abc", "1.5e9", "-1", "1748779200.5", "9" * 30])
def test_verify_rejects_a_timestamp_that_is_not_unix_seconds(timestamp: str) -> None:
    headers = signed_headers(BODY, at=NOW) | {"webhook-timestamp": timestamp}

    with pytest.raises(WebhookVerificationError):
        verify_standard_webhook(secret=SECRET, headers=headers, body=BODY, now=NOW)


def test_verify_ignores_other_signature_versions_and_malformed_entries() -> None:
    valid = signed_headers(BODY, at=NOW)["webhook-signature"]
    encoded = valid.partition(",")[2]
    headers = signed_headers(BODY, at=NOW)

    for signature in (f"v1a,{encoded}", f"v2,{encoded}", "v1,***", "v1", ","):
        headers["webhook-signature"] = signature
        with pytest.raises(SignatureMismatchError):
            verify_standard_webhook(secret=SECRET, headers=headers, body=BODY, now=NOW)


def test_verify_rejects_a_body_that_is_not_utf8() -> None:
    headers = signed_headers(BODY, at=NOW)

    with pytest.raises(WebhookVerificationError, match="UTF-8"):
        verify_standard_webhook(secret=SECRET, headers=headers, body=b"\xff\xfe", now=NOW)


def test_verify_with_an_unusable_secret_is_a_configuration_error() -> None:
    headers = signed_headers(BODY, at=NOW)

    with pytest.raises(ValueError, match="secret"):
        verify_standard_webhook(secret="whsec_", headers=headers, body=BODY, now=NOW)
