"""fal.ai adapter: requests on fal's queue API, webhooks signed with Ed25519 keys from a JWKS.

fal addresses a request under its model's app, not under the full model id
(https://docs.fal.ai/model-endpoints/queue and fal-client's `AppId`):

- submit `POST {queue}/{model id}` with the full id, e.g.
  `fal-ai/kling-video/v2.1/standard/text-to-video`; `?fal_webhook=<url>` asks for a webhook when
  the request finishes;
- status `GET {queue}/{app}/requests/{id}/status?logs=1`, result `GET {queue}/{app}/requests/{id}`,
  cancel `PUT {queue}/{app}/requests/{id}/cancel`, where `{app}` is the id's first two segments
  (`fal-ai/kling-video`, `fal-ai/minimax`), or its first three behind fal's `workflows/` and
  `comfy/` namespaces.

A status JSON is read by `_parse_status`, a webhook body by `_parse_webhook`; both hand a
successful result to `_with_outputs`. Decisions:

- A finished request is `COMPLETED` whether it succeeded, failed or was cancelled; a failure
  carries `error` and `error_type`. `error_type` `client_cancelled` maps to CANCELED, any other
  failure to FAILED.
- fal reports some failures only when the result is fetched: the status says `COMPLETED` without
  an error and the result answers 4xx with fal's `detail` (a model's input validation errors, a
  content policy violation). That is the job failing at fal, not our request being refused, so it
  is a FAILED snapshot rather than `ProviderRejected`; 401, 403, 408 and 429 still raise, being
  about our call rather than the job.
- Outputs are `video.url`, else each `videos[].url`; for image models, `image.url`, else each
  `images[].url`. Images count only when there is no video, so a video model's poster frame is
  never stored as an output. Only http(s) URLs count (fal returns data URIs in sync mode). A
  successful result without any is FAILED, as for Replicate: SUCCEEDED without URLs would let a
  job complete with nothing stored.
- A webhook with status `OK` whose payload fal could not deliver (`payload` null and a
  `payload_error`: too large or not serialisable) is PROCESSING, not terminal: the result is still
  at fal, and the job's polling fetches it. FAILED would throw away a finished, paid-for video.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx

from reelflow.providers.errors import (
    ProviderRejected,
    ProviderUnavailable,
)
from reelflow.providers.http import (
    decode_json,
    is_http_url,
    progress_from_logs,
    raise_for_status,
    redact,
    send,
    truncate,
)
from reelflow.providers.signatures import (
    ed25519_keys_from_jwks,
    parse_verified_body,
    verify_fal_webhook,
    verify_with_refresh,
)
from reelflow.types import ProviderSnapshot, ProviderState

__all__ = ["FalProvider"]

logger = logging.getLogger(__name__)

_STATES: Final[Mapping[str, ProviderState]] = {
    "IN_QUEUE": ProviderState.QUEUED,
    "IN_PROGRESS": ProviderState.PROCESSING,
    # Failures are COMPLETED too; `_parse_status` tells them apart by their error.
    "COMPLETED": ProviderState.SUCCEEDED,
}
# fal's `error_type` for a request its caller cancelled (docs: "Request Error Types").
_CANCELLED_ERROR_TYPE: Final = "client_cancelled"
# Namespaces that put one more segment in front of owner/app (fal-client's APP_NAMESPACES).
_APP_NAMESPACES: Final = frozenset({"workflows", "comfy"})
_PATH_SEGMENT: Final = re.compile(r"[\w.-]+", re.ASCII)
# Result-fetch answers about our call rather than the job: they raise instead of failing it.
_NOT_JOB_FAILURES: Final = frozenset({401, 403, 408, 429})
# fal asks for keys to be cached at most a day.
_JWKS_MAX_AGE_S: Final = 24 * 3600.0
# Keys fetched less than this long ago are current: re-fetching them on every bad signature would
# let anyone who can reach the webhook route make us call fal once per forged request.
_JWKS_REFETCH_AFTER_S: Final = 60.0


class FalProvider:
    """Runs models on fal.ai's queue (https://docs.fal.ai/model-endpoints/queue).

    The HTTP client is shared and owned by the caller; this class never retries (Temporal does).
    The API key only ever goes into the `Authorization` header of queue requests (never to the
    JWKS URL): it is kept out of messages, logs and `repr`.

    Args:
        http: Client for all requests (its timeouts apply).
        queue_base: The queue's base URL, e.g. `https://queue.fal.run`, or the emulator's.
        api_key: fal API key (`FAL_KEY`), sent as `Authorization: Key <api_key>`.
        jwks_url: Where fal publishes its webhook signing keys, fetched without credentials;
            fal's is `https://rest.alpha.fal.ai/.well-known/jwks.json`.
        clock: Monotonic seconds, for the age of the fetched keys (a parameter for tests).
    """

    name = "fal"

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        queue_base: str,
        api_key: str,
        jwks_url: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not api_key:
            raise ValueError("a fal API key is required")
        self._http = http
        self._queue_base = queue_base.rstrip("/")
        self._api_key = api_key
        self._jwks_url = jwks_url
        self._clock = clock
        self._keys: list[bytes] | None = None
        self._keys_fetched_at = 0.0
        # Time of the last fetch attempt, successful or not, which limits re-fetches on a bad
        # signature even while fal's JWKS endpoint is failing.
        self._keys_tried_at = 0.0
        self._keys_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"FalProvider(queue_base={self._queue_base!r})"

    async def create(
        self, *, model_path: str, inputs: Mapping[str, Any], webhook_url: str | None
    ) -> ProviderSnapshot:
        """Submit a request to the model's queue.

        Args:
            model_path: fal's model id, subpath included, e.g.
                `fal-ai/kling-video/v2.1/standard/text-to-video`.
            inputs: The model's input, sent as the JSON body.
            webhook_url: Where fal should post the outcome; None when the caller polls.

        Returns:
            The queued request (`IN_QUEUE`).

        Raises:
            ProviderRejected: the model path is malformed or fal refused the request.
            ProviderUnavailable: a transient failure, including rate limiting.
        """
        app = _app_path(model_path)
        path = f"/{model_path}"
        params = {"fal_webhook": webhook_url} if webhook_url is not None else None
        data = await self._request("POST", path, json=dict(inputs), params=params)
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise ProviderUnavailable(f"fal POST {path} returned no request_id")
        # The submit answer is a status object, though older deployments leave `status` out.
        snapshot = self._parsed({"status": "IN_QUEUE"} | data, request_id, path)
        status_path = f"/{app}/requests/{quote(request_id, safe='')}/status"
        status_url = data.get("status_url")
        if isinstance(status_url, str) and not urlsplit(status_url).path.endswith(status_path):
            # fal built its URL from another app path than ours: polling would miss the request.
            logger.warning(
                "fal's status URL %s for request %s differs from the one polled (%s)",
                status_url,
                request_id,
                status_path,
            )
        logger.info(
            "Created fal request %s for %s (%s)",
            request_id,
            model_path,
            "webhook" if webhook_url else "polling",
        )
        return snapshot

    async def find_existing(
        self, *, model_path: str, webhook_url: str | None, created_after: datetime
    ) -> ProviderSnapshot | None:
        """Always None: fal cannot find a request by a value the client chose.

        The queue API lists no requests. The Platform API's request history
        (`GET https://api.fal.ai/v1/models/requests/by-endpoint`) filters by endpoint, time,
        outcome (`success`, `error`, `user_error`: finished requests only) and request id, and
        shows no webhook URL; inputs are not unique to a job record. A request orphaned by a
        crash still runs, bills, and posts its outcome to the job record's webhook URL, which is
        where it shows up.

        Raises:
            ValueError: `created_after` is naive.
        """
        if created_after.tzinfo is None:
            raise ValueError("created_after must be timezone-aware")
        return None

    async def get(self, provider_job_id: str, *, model_path: str) -> ProviderSnapshot:
        """Fetch a request's status and, once it has completed successfully, its result.

        Args:
            provider_job_id: fal's request id.
            model_path: The model id the request was submitted to (fal addresses requests under
                its app).

        Raises:
            ProviderRejected: the id or model path is malformed, or fal refused the request
                (e.g. an unknown id or a bad key).
            ProviderUnavailable: a transient failure, including rate limiting.
        """
        base = _request_path(model_path, provider_job_id)
        status_path = f"{base}/status"
        data = await self._request("GET", status_path, params={"logs": "1"})
        snapshot = self._parsed(data, provider_job_id, status_path)
        if snapshot.state is not ProviderState.SUCCEEDED:
            return snapshot

        response = await self._send("GET", base)
        failure = _job_failure(response)
        if failure is not None:
            state, error = failure
            return replace(snapshot, state=state, error=redact(error, self._api_key), progress=None)
        return _with_outputs(snapshot, self._checked_json(response, "GET", base))

    async def cancel(self, provider_job_id: str, *, model_path: str) -> None:
        """Cancel a request so it stops billing.

        fal removes a queued request and signals a running one to stop (202
        `CANCELLATION_REQUESTED`); a request that already finished answers 400
        `ALREADY_COMPLETED`, which is not an error here.

        Raises:
            ProviderRejected: the id or model path is malformed, or fal does not know the
                request (404).
            ProviderUnavailable: a transient failure, including rate limiting.
        """
        path = f"{_request_path(model_path, provider_job_id)}/cancel"
        response = await self._send("PUT", path)
        data = _json_or_none(response)
        outcome = data.get("status") if isinstance(data, dict) else None
        if response.status_code < 500 and outcome == "ALREADY_COMPLETED":
            logger.info("fal request %s had already completed; nothing to cancel", provider_job_id)
            return
        self._check(response, "PUT", path)
        logger.info(
            "Cancel of fal request %s: %s", provider_job_id, outcome or response.status_code
        )

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> ProviderSnapshot:
        """Verify a webhook's Ed25519 signature and timestamp, then parse its body.

        fal's keys are fetched on the first webhook and again once they are a day old. If no key
        verifies the signature and the keys were fetched over a minute ago, they are fetched again
        and the webhook verified once more: fal may have rotated its keys, and rejecting every
        webhook until the cache expires would leave jobs waiting for the polling safety net.

        Raises:
            WebhookVerificationError: a header is missing, no key verifies the signature, the
                timestamp is more than 5 minutes off, or the body is not a fal webhook.
            ProviderUnavailable: the keys could not be fetched; the caller should answer with a
                5xx so that fal retries (it does, for 2 hours).
            ProviderRejected: the JWKS URL refused the request.
        """
        request_id = await verify_with_refresh(
            await self._signing_keys(),
            lambda keys: verify_fal_webhook(jwks=keys, headers=headers, body=body),
            lambda keys: self._refetched_keys(replacing=keys),
        )
        snapshot = parse_verified_body(body, _parse_webhook, "a fal webhook")
        logger.debug(
            "Verified fal webhook for request %s: %s",
            request_id,
            snapshot.provider_status,
        )
        return snapshot

    def download_headers(self, url: str) -> dict[str, str]:
        """No headers: fal's output URLs (fal.media CDN) are public."""
        return {}

    async def _signing_keys(self) -> list[bytes]:
        """fal's public keys, fetched when missing or a day old; concurrent calls fetch once."""
        async with self._keys_lock:
            if self._keys is None or self._clock() - self._keys_fetched_at >= _JWKS_MAX_AGE_S:
                return await self._fetch_keys()
            return self._keys

    async def _refetched_keys(self, *, replacing: list[bytes]) -> list[bytes] | None:
        """Keys other than `replacing`, or None when there is no reason to expect any."""
        async with self._keys_lock:
            if self._keys is not replacing:
                # Another webhook already re-fetched them while this one was being verified.
                return self._keys
            if self._clock() - self._keys_tried_at < _JWKS_REFETCH_AFTER_S:
                return None
            fresh = await self._fetch_keys()
        if fresh == replacing:
            return None
        logger.warning("fal's webhook signing keys have changed; using the new ones")
        return fresh

    async def _fetch_keys(self) -> list[bytes]:
        """Fetch and cache the JWKS; the caller holds the lock."""
        self._keys_tried_at = self._clock()
        what = f"fal GET {self._jwks_url}"
        # No Authorization header: the JWKS is public, and the URL is configuration, so the key
        # must not go wherever it points.
        response = await send(self._http, "GET", self._jwks_url, what=what, secret=self._api_key)
        raise_for_status(response, what=what, secret=self._api_key, problem=_problem)
        try:
            keys = ed25519_keys_from_jwks(decode_json(response, what=what))
        except ValueError as exc:
            raise ProviderUnavailable(f"{what} returned no usable JWKS: {exc}") from exc
        if not keys:
            raise ProviderUnavailable(f"{what} returned no Ed25519 signing key")
        self._keys, self._keys_fetched_at = keys, self._clock()
        logger.info("Fetched %d fal webhook signing key(s)", len(keys))
        return keys

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one queue request and return its decoded JSON, mapping failures to errors."""
        response = await self._send(method, path, json=json, params=params)
        return self._checked_json(response, method, path)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        # Messages name the path only: the query may hold the webhook URL.
        return await send(
            self._http,
            method,
            f"{self._queue_base}{path}",
            what=f"fal {method} {path}",
            secret=self._api_key,
            headers={"Authorization": f"Key {self._api_key}"},
            json=json,
            params=params,
        )

    def _check(self, response: httpx.Response, method: str, path: str) -> None:
        what = f"fal {method} {path}"
        raise_for_status(response, what=what, secret=self._api_key, problem=_problem)

    def _checked_json(self, response: httpx.Response, method: str, path: str) -> Any:
        self._check(response, method, path)
        return decode_json(response, what=f"fal {method} {path}")

    def _parsed(self, data: Any, request_id: str, path: str) -> ProviderSnapshot:
        try:
            return _parse_status(data, request_id)
        except ValueError as exc:
            # A 2xx that is not a status is fal (or a proxy) misbehaving: transient.
            raise ProviderUnavailable(f"fal {path} returned no request status: {exc}") from exc


def _app_path(model_path: str) -> str:
    """The part of a model id that status, result and cancel URLs use (fal drops the rest).

    Raises:
        ProviderRejected: `model_path` is not `owner/app[/path…]` of plain segments.
    """
    segments = model_path.split("/")
    app_length = 3 if segments[0] in _APP_NAMESPACES else 2
    if len(segments) < app_length or not all(
        _PATH_SEGMENT.fullmatch(segment) and segment not in (".", "..") for segment in segments
    ):
        raise ProviderRejected(f"invalid fal model path {model_path!r}: expected owner/app[/path]")
    return "/".join(segments[:app_length])


def _request_path(model_path: str, request_id: str) -> str:
    if not request_id:
        raise ProviderRejected("empty fal request id")
    # Quoted so that an id can never reach another endpoint (`../`, `?`).
    return f"/{_app_path(model_path)}/requests/{quote(request_id, safe='')}"


def _parse_status(data: Any, request_id: str) -> ProviderSnapshot:
    """Read a queue status object (submit or status answer) into a snapshot.

    A `COMPLETED` status without an error comes back SUCCEEDED but without outputs: those are in
    the result, which `_with_outputs` reads.

    Raises:
        ValueError: `data` is not a status object.
    """
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    status = data.get("status")
    if not isinstance(status, str):
        raise ValueError("no status")
    state = _STATES.get(status)
    if state is None:
        # A status fal adds later must not fail jobs; the job's deadline still bounds it.
        logger.warning("Unknown fal status %r for request %s", status, request_id)
        state = ProviderState.PROCESSING

    error: str | None = None
    progress = _progress(data.get("logs"))
    if status == "IN_QUEUE":
        logger.debug("fal request %s is queued at %s", request_id, data.get("queue_position"))
    elif status == "COMPLETED":
        error_type = data.get("error_type")
        error = _with_error_type(data.get("error"), error_type)
        if error is not None:
            state = _failure_state(error_type)
            progress = None
        else:
            progress = 1.0
    metrics = data.get("metrics")
    inference_time = metrics.get("inference_time") if isinstance(metrics, dict) else None
    return ProviderSnapshot(
        provider_job_id=request_id,
        state=state,
        provider_status=status,
        error=error,
        progress=progress,
        compute_seconds=_seconds(inference_time),
    )


def _parse_webhook(data: Any) -> ProviderSnapshot:
    """Read a webhook body into a snapshot.

    The body is `{request_id, gateway_request_id, status, payload, error, payload_error}`, with
    status `OK` or `ERROR`. `request_id` is the queue's id, the one `get` and `cancel` take;
    `gateway_request_id` names the last attempt when fal retried the request.

    Raises:
        ValueError: `data` is not a fal webhook body.
    """
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    request_id = data.get("request_id")
    status = data.get("status")
    if not isinstance(request_id, str) or not request_id or not isinstance(status, str):
        raise ValueError("no request_id or status")
    payload = data.get("payload")

    if status == "OK":
        payload_error = data.get("payload_error")
        if payload is None or payload_error:
            # PROCESSING rather than terminal, for the reason in the module docstring.
            logger.warning(
                "fal's webhook for request %s came without its result (%s); polling will fetch it",
                request_id,
                truncate(str(payload_error), 200),
            )
            return ProviderSnapshot(request_id, ProviderState.PROCESSING, status)
        done = ProviderSnapshot(request_id, ProviderState.SUCCEEDED, status, progress=1.0)
        return _with_outputs(done, payload)
    if status == "ERROR":
        details = _error_text(payload) if isinstance(payload, dict) else None
        error = data.get("error")
        summary = str(error) if error else None
        if summary and details:
            summary = f"{summary} ({details})"
        error_type = payload.get("error_type") if isinstance(payload, dict) else None
        return ProviderSnapshot(
            request_id,
            _failure_state(error_type),
            status,
            error=truncate(summary or details or "fal reported an error without a message"),
        )
    # A status fal adds later must not fail jobs; the job's deadline still bounds it.
    logger.warning("Unknown fal webhook status %r for request %s", status, request_id)
    return ProviderSnapshot(request_id, ProviderState.PROCESSING, status)


def _with_outputs(snapshot: ProviderSnapshot, result: Any) -> ProviderSnapshot:
    """`snapshot` of a successful request with its result's output URLs, or FAILED without any."""
    urls = _output_urls(result)
    if urls:
        return replace(snapshot, output_urls=urls, progress=1.0)
    return replace(
        snapshot,
        state=ProviderState.FAILED,
        progress=None,
        error=(
            "fal reported success but the result holds no http(s) video or image URL "
            f"(result: {truncate(json.dumps(result), 200)})"
        ),
    )


def _output_urls(result: Any) -> list[str]:
    """The output URLs of a result: its video(s), else its image(s), in order, deduplicated."""
    if not isinstance(result, dict):
        return []
    for one, many in (("video", "videos"), ("image", "images")):
        files = [result[one]] if result.get(one) is not None else result.get(many)
        if not isinstance(files, list):
            continue
        found = [
            file["url"]
            for file in files
            if isinstance(file, dict)
            and isinstance(file.get("url"), str)
            and is_http_url(file["url"])
        ]
        if found:
            return list(dict.fromkeys(found))
    return []


def _job_failure(response: httpx.Response) -> tuple[ProviderState, str] | None:
    """The state and error of a result fetch that shows the job failed at fal, else None."""
    status = response.status_code
    if not 400 <= status < 500 or status in _NOT_JOB_FAILURES:
        return None
    data = _json_or_none(response)
    if not isinstance(data, dict) or not data.get("detail"):
        return None
    error = _error_text(data) or f"fal answered {status}"
    return _failure_state(data.get("error_type")), error


def _failure_state(error_type: Any) -> ProviderState:
    return ProviderState.CANCELED if error_type == _CANCELLED_ERROR_TYPE else ProviderState.FAILED


def _error_text(data: Mapping[str, Any]) -> str | None:
    """fal's `detail` (a message, or a list of `{loc, msg, type}`) with its `error_type`."""
    detail = data.get("detail")
    if isinstance(detail, str):
        text: str | None = detail.strip()
    elif isinstance(detail, list):
        text = "; ".join(_validation_error(item) for item in detail)
    elif detail:
        text = json.dumps(detail, sort_keys=True)
    else:
        text = None
    return _with_error_type(text, data.get("error_type"))


def _validation_error(item: Any) -> str:
    """One `{loc, msg, type}` entry as `loc: msg`, e.g. `prompt: field required`."""
    if not isinstance(item, dict):
        return str(item)
    message = str(item.get("msg") or item.get("type") or "invalid")
    loc = item.get("loc")
    parts = [str(part) for part in loc] if isinstance(loc, list) else []
    # Every input field sits under `body`; naming it adds nothing for the person who sent it.
    if parts[:1] == ["body"]:
        parts = parts[1:]
    return f"{'.'.join(parts)}: {message}" if parts else message


def _with_error_type(error: Any, error_type: Any) -> str | None:
    """An error message followed by its machine-readable type, either one possibly missing."""
    text = (error if isinstance(error, str) else json.dumps(error)) if error else ""
    if isinstance(error_type, str) and error_type:
        text = f"{text} ({error_type})" if text else error_type
    return truncate(text) if text else None


def _problem(response: httpx.Response) -> str:
    """fal's explanation of an error response: its `detail`, else its `status`, else the text."""
    data = _json_or_none(response)
    if isinstance(data, dict):
        text = _error_text(data)
        if text:
            return text
        # Cancel answers `{"status": "NOT_FOUND"}`.
        if isinstance(data.get("status"), str):
            return str(data["status"])
    return response.text.strip() or response.reason_phrase


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _progress(logs: Any) -> float | None:
    """Fraction done from the messages of a status's `logs` (`[{message, level, …}]`)."""
    if not isinstance(logs, list):
        return None
    messages = [str(entry.get("message", "")) for entry in logs if isinstance(entry, dict)]
    return progress_from_logs("\n".join(messages))


def _seconds(value: Any) -> float | None:
    # bool is an int subclass; `true` is not a duration.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
