"""Replicate adapter: predictions over Replicate's HTTP API, webhooks signed with Standard Webhooks.

Every response and webhook body is a prediction, read by one function (`_parse_prediction`) into a
`ProviderSnapshot`. Two of Replicate's states need a decision:

- `aborted` maps to FAILED. Replicate uses it for a prediction whose deadline passed before it
  started running. We never asked for that cancellation, and a job that never ran has failed;
  CANCELED would read as "someone cancelled this job" in the status API and in the workflow.
- A `succeeded` prediction without usable output maps to FAILED, with `provider_status` still
  `succeeded` and the error saying why. That covers `data_removed` (Replicate deletes outputs about
  an hour after completion) and output holding no http(s) URL. The persist step re-fetches a job
  when its output URLs have expired; Replicate never re-issues URLs, so all a re-fetch can learn is
  that the outputs are gone for good, and a terminal FAILED snapshot says so through the path
  every caller already handles. A SUCCEEDED snapshot without URLs would let a job "complete" with
  nothing stored.

`find_existing` looks for a prediction created by an earlier attempt whose id was never recorded.
Replicate's list (`GET /v1/predictions`: newest first, 100 a page, a `next` cursor URL, a
`created_after` filter) does not show a prediction's `webhook` (neither the documented example
nor the OpenAPI schema of its results has it), so each listed prediction of the same model is
fetched (`GET /v1/predictions/{id}`) and its `webhook` compared. That a fetched prediction echoes
the `webhook` given at creation is not in Replicate's reference either, but Replicate's own Go and
JavaScript clients model the field on a prediction; if Replicate stopped echoing it, nothing would
match: a miss, never a wrong match. Both steps are bounded, at most `_FIND_MAX_PAGES` list pages
and `_FIND_MAX_FETCHES` fetches, so one lookup costs at most 23 requests against the 3000/min
limit of non-create requests. It costs one list request when no prediction was created since
`created_after`, the common case (a start activity retried for another reason).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlsplit

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
    send,
    truncate,
)
from reelflow.providers.signatures import (
    parse_verified_body,
    verify_standard_webhook,
    verify_with_refresh,
)
from reelflow.types import ProviderSnapshot, ProviderState

__all__ = ["ReplicateProvider"]

logger = logging.getLogger(__name__)

_STATES: Final[Mapping[str, ProviderState]] = {
    "starting": ProviderState.QUEUED,
    "processing": ProviderState.PROCESSING,
    "succeeded": ProviderState.SUCCEEDED,
    "failed": ProviderState.FAILED,
    "canceled": ProviderState.CANCELED,
    # Terminal; FAILED rather than CANCELED for the reason in the module docstring.
    "aborted": ProviderState.FAILED,
}
# No `output`: a video model's one output arrives with `completed`, and at completion an
# `output` delivery would carry the same terminal state, costing a second webhook and signal.
_WEBHOOK_EVENTS: Final = ("start", "logs", "completed")
# `owner/name` or `owner/name:version` (a version id is 64 hex digits).
_MODEL_PATH: Final = re.compile(r"([\w.-]+)/([\w.-]+)(?::(\w+))?", re.ASCII)
# A fetched secret younger than this is current: re-fetching it on every bad signature would let
# anyone who can reach the webhook route make us call Replicate's API once per forged request.
_SECRET_REFETCH_AFTER_S: Final = 60.0
# Bounds of one `find_existing`: list pages read (100 predictions each) and predictions fetched.
_FIND_MAX_PAGES: Final = 3
_FIND_MAX_FETCHES: Final = 20


class ReplicateProvider:
    """Runs models on Replicate (https://replicate.com/docs/reference/http).

    The HTTP client is shared and owned by the caller; this class never retries (Temporal does).
    The token only ever goes into the `Authorization` header: it is kept out of messages, logs
    and `repr`.

    Args:
        http: Client for all requests (its timeouts apply).
        api_base: Replicate's base URL without `/v1`, e.g. `https://api.replicate.com`, or the
            emulator's.
        token: Replicate API token.
        webhook_secret: The `whsec_…` signing secret; when None it is fetched from Replicate on
            the first webhook and cached.
        clock: Monotonic seconds, for the age of a fetched secret (a parameter for tests).
    """

    name = "replicate"

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        api_base: str,
        token: str,
        webhook_secret: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token:
            raise ValueError("a Replicate API token is required")
        self._http = http
        self._api_base = api_base.rstrip("/")
        self._token = token
        self._clock = clock
        self._secret = webhook_secret
        # None while the secret is the configured one, which is never re-fetched.
        self._secret_fetched_at: float | None = None
        self._secret_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ReplicateProvider(api_base={self._api_base!r})"

    async def create(
        self, *, model_path: str, inputs: Mapping[str, Any], webhook_url: str | None
    ) -> ProviderSnapshot:
        """Create a prediction.

        Args:
            model_path: `owner/name` for an official model (its latest version) or
                `owner/name:version` for a pinned version.
            inputs: The model's input.
            webhook_url: Where Replicate should send start, logs and completed events;
                None when the caller polls.

        Returns:
            The new prediction, usually `starting`.

        Raises:
            ProviderRejected: the model path is malformed or Replicate refused the request.
            ProviderUnavailable: a transient failure, including rate limiting.
        """
        owner, model, version = _model_parts(model_path)
        body: dict[str, Any] = {"input": dict(inputs)}
        if version is None:
            path = f"/v1/models/{owner}/{model}/predictions"
        else:
            path = "/v1/predictions"
            body["version"] = version
        if webhook_url is not None:
            body["webhook"] = webhook_url
            body["webhook_events_filter"] = list(_WEBHOOK_EVENTS)
        snapshot = self._snapshot_from_response(await self._request("POST", path, body), path)
        logger.info(
            "Created Replicate prediction %s for %s (%s)",
            snapshot.provider_job_id,
            model_path,
            "webhook" if webhook_url else "polling",
        )
        return snapshot

    async def find_existing(
        self, *, model_path: str, webhook_url: str | None, created_after: datetime
    ) -> ProviderSnapshot | None:
        """The newest prediction of `model_path` created with `webhook_url` since `created_after`.

        Lists predictions created since `created_after` (newest first, at most
        `_FIND_MAX_PAGES` pages of 100) and fetches those of the same model (and version, when
        `model_path` pins one), newest first, until one was created with `webhook_url`. The list
        does not show webhooks, hence the fetches; at most `_FIND_MAX_FETCHES` are made, so on a
        busy account where more predictions of the model were created since `created_after`,
        an older match can be missed (a warning says so). A prediction whose fetched body shows
        no `webhook` never matches: a miss, never a wrong match.

        Args:
            model_path: `owner/name` or `owner/name:version`, as given to `create`.
            webhook_url: The webhook URL given to `create`. None (a polling job) always finds
                nothing: such predictions carry nothing that ties them to a job record.
            created_after: A moment before the prediction could have been created
                (timezone-aware); sent rounded down to the second, and it should allow for
                clock skew between this host and Replicate.

        Returns:
            The prediction's current state, or None when none was found.

        Raises:
            ValueError: `created_after` is naive.
            ProviderRejected: the model path is malformed or Replicate refused the request.
            ProviderUnavailable: a transient failure, including rate limiting.
        """
        if created_after.tzinfo is None:
            raise ValueError("created_after must be timezone-aware")
        if webhook_url is None:
            return None
        owner, model, version = _model_parts(model_path)
        fetched = 0
        async with aclosing(self._listed_since(created_after)) as listed_predictions:
            async for listed in listed_predictions:
                if listed.model != f"{owner}/{model}" or version not in (None, listed.version):
                    continue
                if fetched == _FIND_MAX_FETCHES:
                    # The webhook URL holds the job's token: it stays out of logs.
                    logger.warning(
                        "Stopped looking for an earlier Replicate prediction of %s after"
                        " fetching %d; an older one may exist",
                        model_path,
                        fetched,
                    )
                    return None
                fetched += 1
                path = _prediction_path(listed.id)
                data = await self._request("GET", path)
                if isinstance(data, dict) and data.get("webhook") == webhook_url:
                    snapshot = self._snapshot_from_response(data, path)
                    logger.info(
                        "Found Replicate prediction %s of %s created earlier for this job (%s)",
                        snapshot.provider_job_id,
                        model_path,
                        snapshot.provider_status,
                    )
                    return snapshot
        return None

    async def get(self, provider_job_id: str, *, model_path: str = "") -> ProviderSnapshot:
        """Fetch a prediction's current state.

        Prediction ids are global at Replicate, so `model_path` is not needed.

        Raises:
            ProviderRejected: the id is empty or unknown to Replicate.
            ProviderUnavailable: a transient failure, including rate limiting.
        """
        path = _prediction_path(provider_job_id)
        return self._snapshot_from_response(await self._request("GET", path), path)

    async def cancel(self, provider_job_id: str, *, model_path: str = "") -> None:
        """Cancel a prediction so it stops billing (`model_path` is not needed).

        Replicate answers a cancel of a finished prediction with the prediction unchanged, so a
        job that finished meanwhile is not an error.

        Raises:
            ProviderRejected: the id is empty or unknown to Replicate.
            ProviderUnavailable: a transient failure, including rate limiting.
        """
        path = _prediction_path(provider_job_id, "/cancel")
        snapshot = self._snapshot_from_response(await self._request("POST", path), path)
        logger.info(
            "Cancel of Replicate prediction %s: now %s",
            snapshot.provider_job_id,
            snapshot.provider_status,
        )

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> ProviderSnapshot:
        """Verify a webhook's Standard Webhooks signature and timestamp, then parse its prediction.

        When no secret was configured it is fetched once and cached. If no signature matches a
        fetched secret that is over a minute old, the secret is fetched again and the webhook
        verified once more: the account's secret may have been rotated since, and rejecting every
        webhook until a restart would leave jobs waiting for the polling safety net.

        Raises:
            WebhookVerificationError: a header is missing, the signature does not match, the
                timestamp is more than 5 minutes off, or the body is not a prediction.
            ProviderUnavailable: the secret could not be fetched; the caller should answer with a
                5xx so that Replicate retries.
            ProviderRejected: Replicate refused to hand out the secret (e.g. a bad token).
        """
        webhook_id = await verify_with_refresh(
            await self._webhook_secret(),
            lambda secret: verify_standard_webhook(secret=secret, headers=headers, body=body),
            lambda secret: self._refetched_secret(replacing=secret),
        )
        snapshot = parse_verified_body(body, _parse_prediction, "a Replicate prediction")
        logger.debug(
            "Verified Replicate webhook %s: prediction %s is %s",
            webhook_id,
            snapshot.provider_job_id,
            snapshot.provider_status,
        )
        return snapshot

    def download_headers(self, url: str) -> dict[str, str]:
        """No headers: Replicate's output URLs (replicate.delivery) are public."""
        return {}

    async def _webhook_secret(self) -> str:
        """The signing secret, fetched on first use; the lock makes concurrent calls fetch once."""
        async with self._secret_lock:
            if self._secret is None:
                self._secret = await self._fetch_webhook_secret()
                self._secret_fetched_at = self._clock()
            return self._secret

    async def _refetched_secret(self, *, replacing: str) -> str | None:
        """A secret other than `replacing`, or None when there is no reason to expect one."""
        async with self._secret_lock:
            if self._secret != replacing:
                # Another webhook already re-fetched it while this one was being verified.
                return self._secret
            fetched_at = self._secret_fetched_at
            if fetched_at is None or self._clock() - fetched_at < _SECRET_REFETCH_AFTER_S:
                return None
            fresh = await self._fetch_webhook_secret()
            self._secret, self._secret_fetched_at = fresh, self._clock()
        if fresh == replacing:
            return None
        logger.warning("Replicate's webhook signing secret has changed; using the new one")
        return fresh

    async def _fetch_webhook_secret(self) -> str:
        path = "/v1/webhooks/default/secret"
        data = await self._request("GET", path)
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key:
            raise ProviderUnavailable(f"Replicate GET {path} returned no signing key")
        return key

    async def _listed_since(self, created_after: datetime) -> AsyncGenerator[_Listed, None]:
        """Predictions created at or after `created_after`, newest first, from a few list pages.

        The filter is also applied here, so that the walk stops at the first older prediction
        even if Replicate ignored the query parameter. Only the cursor is taken from a page's
        `next` URL: the request itself always goes to `api_base`, so the token cannot be sent
        to a host a response named.
        """
        path = "/v1/predictions"
        # Whole seconds, as Replicate's documentation writes it (`2025-01-01T00:00:00Z`);
        # rounding down only widens the window.
        params = {"created_after": created_after.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        for _ in range(_FIND_MAX_PAGES):
            data = await self._request("GET", path, params=params)
            try:
                results, next_url = _parse_page(data)
            except ValueError as exc:
                raise ProviderUnavailable(f"Replicate GET {path} returned no page: {exc}") from exc
            for item in results:
                listed = _parse_listed(item)
                if listed is None:
                    logger.warning("Skipping a Replicate list result without id or created_at")
                    continue
                if listed.created_at < created_after:
                    return
                yield listed
            cursor = _cursor(next_url) if next_url is not None else None
            if cursor is None:
                return
            params = {**params, "cursor": cursor}
        logger.warning(
            "Stopped listing Replicate predictions after %d pages; older ones were not searched",
            _FIND_MAX_PAGES,
        )

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request and return its decoded JSON, mapping failures to provider errors."""
        what = f"Replicate {method} {path}"
        response = await send(
            self._http,
            method,
            f"{self._api_base}{path}",
            what=what,
            secret=self._token,
            headers={"Authorization": f"Bearer {self._token}"},
            json=body,
            params=params,
        )
        raise_for_status(response, what=what, secret=self._token, problem=_problem)
        return decode_json(response, what=what)

    def _snapshot_from_response(self, data: Any, path: str) -> ProviderSnapshot:
        try:
            return _parse_prediction(data)
        except ValueError as exc:
            # A 2xx that is not a prediction is Replicate (or a proxy) misbehaving: transient.
            raise ProviderUnavailable(f"Replicate {path} returned no prediction: {exc}") from exc


@dataclass(frozen=True)
class _Listed:
    """What `find_existing` reads from one result of Replicate's prediction list."""

    id: str
    model: str | None
    version: str | None
    created_at: datetime


def _model_parts(model_path: str) -> tuple[str, str, str | None]:
    """`owner`, `name` and the pinned version (or None) of `owner/name[:version]`."""
    match = _MODEL_PATH.fullmatch(model_path)
    if match is None:
        raise ProviderRejected(
            f"invalid Replicate model path {model_path!r}: expected owner/name[:version]"
        )
    owner, model, version = match.groups()
    return owner, model, version


def _parse_page(data: Any) -> tuple[list[Any], str | None]:
    """The results and `next` URL of a list page (`{"next", "previous", "results"}`).

    Raises:
        ValueError: `data` is not a page.
    """
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError("expected an object with a `results` list")
    next_url = data.get("next")
    return data["results"], next_url if isinstance(next_url, str) and next_url else None


def _parse_listed(item: Any) -> _Listed | None:
    """A list result's id, model, version and creation time; None if it lacks id or time."""
    if not isinstance(item, dict):
        return None
    prediction_id, created_at = item.get("id"), item.get("created_at")
    if not isinstance(prediction_id, str) or not prediction_id or not isinstance(created_at, str):
        return None
    try:
        # Replicate writes `2023-09-08T16:19:34.907244Z`, sometimes with nanoseconds.
        created = datetime.fromisoformat(created_at)
    except ValueError:
        return None
    model, version = item.get("model"), item.get("version")
    return _Listed(
        id=prediction_id,
        model=model if isinstance(model, str) else None,
        version=version if isinstance(version, str) else None,
        created_at=created if created.tzinfo is not None else created.replace(tzinfo=UTC),
    )


def _cursor(next_url: str) -> str | None:
    """The `cursor` query parameter of a page's `next` URL."""
    try:
        values = parse_qs(urlsplit(next_url).query).get("cursor")
    except ValueError:
        return None
    return values[0] if values else None


def _prediction_path(provider_job_id: str, suffix: str = "") -> str:
    if not provider_job_id:
        raise ProviderRejected("empty Replicate prediction id")
    # Quoted so that an id can never reach another endpoint (`../`, `?`).
    return f"/v1/predictions/{quote(provider_job_id, safe='')}{suffix}"


def _parse_prediction(data: Any) -> ProviderSnapshot:
    """Read a prediction (API response or webhook body) into a snapshot.

    Raises:
        ValueError: `data` is not a prediction (no id or status).
    """
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    prediction_id = data.get("id")
    status = data.get("status")
    if not isinstance(prediction_id, str) or not prediction_id or not isinstance(status, str):
        raise ValueError("no id or status")

    state = _STATES.get(status)
    if state is None:
        # A status Replicate adds later must not fail jobs; the job's deadline still bounds it.
        logger.warning("Unknown Replicate status %r for prediction %s", status, prediction_id)
        state = ProviderState.PROCESSING
    error = _error_text(data.get("error"))
    logs = data.get("logs")
    progress = progress_from_logs(logs) if isinstance(logs, str) else None
    output_urls: list[str] = []

    if status == "aborted":
        reason = "Replicate aborted the prediction: its deadline passed before it started"
        error = f"{reason} ({error})" if error else reason
    elif state is ProviderState.SUCCEEDED:
        output = data.get("output")
        output_urls = _output_urls(output)
        if data.get("data_removed") is True:
            state = ProviderState.FAILED
            error = "Replicate has deleted this prediction's outputs (data_removed)"
            output_urls = []
        elif not output_urls:
            state = ProviderState.FAILED
            error = (
                "Replicate reported success but the output holds no http(s) URL "
                f"(output: {truncate(json.dumps(output), 200)})"
            )
        else:
            progress = 1.0
    elif state is ProviderState.FAILED and error is None:
        error = "Replicate reported the prediction failed without an error message"

    metrics = data.get("metrics")
    predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
    return ProviderSnapshot(
        provider_job_id=prediction_id,
        state=state,
        provider_status=status,
        output_urls=output_urls,
        error=error,
        progress=progress,
        compute_seconds=float(predict_time) if isinstance(predict_time, int | float) else None,
    )


def _output_urls(output: Any) -> list[str]:
    """The http(s) URLs in an output, in order and without duplicates.

    Video models return one URL string; community models may return a list mixing URLs with
    other values, or an object (e.g. `{"video": url, "poster": url}`) whose URL values count.
    """
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if is_http_url(value):
                found.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(output)
    return list(dict.fromkeys(found))


def _error_text(value: Any) -> str | None:
    """A prediction's `error`, which is usually a string but may be an object."""
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return truncate(text)


def _problem(response: httpx.Response) -> str:
    """Replicate's explanation of an error response (RFC 7807 problem JSON, else the text).

    A 422 also lists `invalid_fields`, each `{"type", "field", "description"}`.
    """
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return response.text.strip() or response.reason_phrase
    summary = data.get("detail") or data.get("title")
    parts = [summary.strip()] if isinstance(summary, str) else []
    fields = data.get("invalid_fields")
    if isinstance(fields, list):
        described = [_invalid_field(item) for item in fields if isinstance(item, dict)]
        if described:
            parts.append(f"invalid fields: {'; '.join(described)}")
    return (
        "; ".join(part for part in parts if part) or response.text.strip() or response.reason_phrase
    )


def _invalid_field(item: Mapping[str, Any]) -> str:
    field = item.get("field")
    description = str(item.get("description") or item.get("type") or "invalid")
    return f"{field}: {description}" if isinstance(field, str) and field else description
