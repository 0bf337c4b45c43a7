"""Google Veo adapter: video generation through the Gemini API's long-running operations.

A job is `POST /v1beta/models/{model}:predictLongRunning`, which answers with an operation named
`models/{model}/operations/{id}`; its state is `GET /v1beta/{name}`. Veo is polling-only here:
the Gemini API's webhooks are in beta, so `create` ignores a webhook URL and `verify_webhook`
refuses everything. The Gemini API cannot cancel these operations (its only `:cancel` is for
batches), so `cancel` merely logs: Google finishes, and bills, a generation we stop polling.

`inputs`, as the model registry builds it, is flat, in the Gemini API's own names:

    {"prompt": "a fox in the snow", "aspectRatio": "16:9", "durationSeconds": 8}
    {"prompt": "the fox runs", "image": "https://cdn.example.com/fox.png", "resolution": "720p"}

`prompt` (required) and `image` (optional, an http(s) URL) become the request's one instance;
every other key goes unchanged into `parameters` (`aspectRatio`, `durationSeconds`,
`negativePrompt`, `resolution`, `personGeneration`, …). The Gemini API takes an input image only
inline, as `{"bytesBase64Encoded", "mimeType"}` (Cloud Storage URIs are for Vertex AI only), and
the registry does no I/O, so `create` downloads the image, without the API key, and inlines it.
The URL comes from a user's plan, so the download goes through `reelflow.netguard`: only to
allowed hosts (redirects included), only to public addresses when the guarded client is given,
only an image, at most 20 MiB.

Every response is an operation, read by one function (`_parse_operation`). An operation has no
status word, only `done`, so `provider_status` holds words of our own:

- `running`: not done yet. Veo reports no progress.
- `succeeded`: done with at least one video URI.
- `filtered`: done, but safety filters removed every video (`raiMediaFilteredReasons`); FAILED.
- `failed`: done with an `error`, or with neither a video nor a filter reason; FAILED.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from reelflow.netguard import (
    IMAGE,
    DownloadRefused,
    HostAllowlist,
    content_type_of,
    iter_capped,
    open_checked,
    redact_url,
)
from reelflow.providers.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    WebhookVerificationError,
)
from reelflow.providers.http import (
    decode_json,
    is_http_url,
    raise_for_status,
    send,
    truncate,
)
from reelflow.types import ProviderSnapshot, ProviderState

__all__ = ["VeoProvider"]

logger = logging.getLogger(__name__)

_KEY_HEADER: Final = "x-goog-api-key"
# Model ids (`veo-3.0-generate-001`) and operation ids are single path segments. Starting with a
# letter or digit keeps out `.` and `..`; the character set keeps out `/`, `?`, `#` and `%`.
_SEGMENT: Final = r"[A-Za-z0-9][\w.-]*"
_MODEL_ID: Final = re.compile(_SEGMENT, re.ASCII)
_OPERATION_NAME: Final = re.compile(rf"models/{_SEGMENT}/operations/{_SEGMENT}", re.ASCII)
# The image is held in memory and sent base64-encoded inside the JSON body.
_MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024
# Google gives its retry hint for a 429 in the error's details, as a google.rpc.RetryInfo,
# which the shared mapping (`Retry-After` only) does not read.
_RETRY_INFO: Final = "type.googleapis.com/google.rpc.RetryInfo"
# A protobuf Duration in JSON: decimal seconds with an `s` suffix, e.g. `27s` or `3.700s`.
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)s")


class VeoProvider:
    """Generates videos with Google Veo through the Gemini API (https://ai.google.dev/gemini-api).

    The HTTP client is shared and owned by the caller; this class never retries (Temporal does).
    The API key only ever goes into the `x-goog-api-key` header of requests to `api_base`'s
    origin: never into a URL, a message, a log line or `repr`.

    Args:
        http: Client for all requests (its timeouts apply).
        api_base: The Gemini API's base URL without `/v1beta`, e.g.
            `https://generativelanguage.googleapis.com`, or the emulator's.
        api_key: Gemini API key.
        image_http: Client for input images: `reelflow.netguard.guarded_client`, which connects
            only to public addresses. Defaults to `http`, which checks no addresses.
        image_hosts: Where input images may come from; defaults to any https host.
    """

    name = "veo"

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        api_base: str,
        api_key: str,
        image_http: httpx.AsyncClient | None = None,
        image_hosts: HostAllowlist | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Gemini API key is required")
        origin = _origin(api_base)
        if origin is None:
            raise ValueError(f"the Gemini API base must be an http(s) URL, not {api_base!r}")
        self._http = http
        self._image_http = image_http or http
        self._image_hosts = image_hosts or HostAllowlist.any_host("Veo input images")
        self._api_base = api_base.rstrip("/")
        self._api_origin = origin
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"VeoProvider(api_base={self._api_base!r})"

    async def create(
        self, *, model_path: str, inputs: Mapping[str, Any], webhook_url: str | None
    ) -> ProviderSnapshot:
        """Start a generation.

        Args:
            model_path: The Gemini model id, e.g. `veo-3.0-generate-001`.
            inputs: `prompt`, optionally `image` (an http(s) URL), and parameters in the Gemini
                API's names; see the module docstring.
            webhook_url: Ignored: Veo jobs are polled.

        Returns:
            The new operation, `running`.

        Raises:
            ProviderRejected: the model id or inputs are malformed, the image cannot be used, or
                Google refused the request.
            ProviderUnavailable: a transient failure (also fetching the image), including rate
                limiting.
        """
        if _MODEL_ID.fullmatch(model_path) is None:
            raise ProviderRejected(
                f"invalid Veo model id {model_path!r}: expected e.g. veo-3.0-generate-001"
            )
        parameters = dict(inputs)
        prompt = parameters.pop("prompt", None)
        image_url = parameters.pop("image", None)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ProviderRejected("Veo input needs a non-empty `prompt`")
        instance: dict[str, Any] = {"prompt": prompt}
        if image_url is not None:
            instance["image"] = await self._inline_image(image_url)
        if webhook_url is not None:
            logger.debug("Ignoring the webhook URL of a Veo job: Veo jobs are polled")

        path = f"/v1beta/models/{model_path}:predictLongRunning"
        body = {"instances": [instance], "parameters": parameters}
        snapshot = self._snapshot_from_response(await self._request("POST", path, body), path)
        logger.info("Created Veo operation %s (polling)", snapshot.provider_job_id)
        return snapshot

    async def find_existing(
        self, *, model_path: str, webhook_url: str | None, created_after: datetime
    ) -> ProviderSnapshot | None:
        """Always None: a Veo operation carries nothing that ties it to a job record.

        An operation is a name, `done` and its outcome: no webhook (Veo jobs are polled), no
        label, not even the request, so the Gemini API offers no way to find one by a value the
        client chose. An operation orphaned by a crash runs to the end and is billed either way
        (the Gemini API cannot cancel it); nothing here can notice it.

        Raises:
            ValueError: `created_after` is naive.
        """
        if created_after.tzinfo is None:
            raise ValueError("created_after must be timezone-aware")
        return None

    async def get(self, provider_job_id: str, *, model_path: str = "") -> ProviderSnapshot:
        """Fetch an operation's current state.

        The operation name holds its model, so `model_path` is not needed.

        Raises:
            ProviderRejected: the name is not `models/{model}/operations/{id}`, or Google does
                not know it.
            ProviderUnavailable: a transient failure, including rate limiting.
        """
        path = _operation_path(provider_job_id)
        return self._snapshot_from_response(await self._request("GET", path), path)

    async def cancel(self, provider_job_id: str, *, model_path: str = "") -> None:
        """Log that the operation cannot be cancelled; the caller stops polling it.

        The Gemini API has no cancel for Veo operations, so this sends nothing.
        """
        logger.info(
            "Veo operation %s cannot be cancelled (the Gemini API has no cancel for it); "
            "it is no longer polled, but Google will finish it",
            provider_job_id,
        )

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> ProviderSnapshot:
        """Refuse every webhook: Veo jobs are polled, so a webhook claiming to be Veo's is forged.

        Raises:
            WebhookVerificationError: always.
        """
        raise WebhookVerificationError("Veo does not send webhooks")

    def download_headers(self, url: str) -> dict[str, str]:
        """The API key, but only for a URL with the API's own scheme, host and port.

        Video URIs (`…/v1beta/files/{id}:download?alt=media`) are on the API host, which wants
        the key and then redirects to storage elsewhere; the key must never go to another host.
        httpx drops only `Authorization` on a redirect to another origin, so a caller following
        redirects must ask again for each hop rather than let these headers ride along.
        """
        if _origin(url) == self._api_origin:
            return {_KEY_HEADER: self._api_key}
        return {}

    async def _inline_image(self, url: Any) -> dict[str, str]:
        """Download an input image, without the API key, into the inline form Gemini takes."""
        if not isinstance(url, str) or not is_http_url(url):
            raise ProviderRejected("Veo input `image` must be an http(s) URL")
        # Query strings of presigned URLs are credentials: keep them out of messages.
        shown = redact_url(url)
        try:
            return await self._fetch_image(url, shown)
        except DownloadRefused as refused:
            if refused.rule == "size":
                message = f"the input image {shown} is over {_MAX_IMAGE_BYTES} bytes"
            else:
                message = f"the input image cannot be used: {refused}"
            error: ProviderError = ProviderRejected(truncate(message))
        except httpx.TimeoutException as exc:
            error = ProviderUnavailable(
                truncate(f"fetching the input image {shown} timed out: {type(exc).__name__}")
            )
        except httpx.TransportError as exc:
            error = ProviderUnavailable(
                truncate(f"fetching the input image {shown} failed: {type(exc).__name__}")
            )
        except httpx.RequestError as exc:
            # Undecodable bodies and the like: the URL itself is the problem.
            error = ProviderRejected(
                truncate(f"fetching the input image {shown} failed: {type(exc).__name__}")
            )
        # Raised after the handler, so the httpx error (and the presigned URL in its request) is
        # neither cause nor context of ours.
        raise error

    async def _fetch_image(self, url: str, shown: str) -> dict[str, str]:
        content = bytearray()
        async with open_checked(
            self._image_http, url, allowed=self._image_hosts, max_bytes=_MAX_IMAGE_BYTES
        ) as response:
            status = response.status_code
            if not response.is_success:
                problem = truncate(f"fetching the input image {shown} answered {status}")
                if status == 429 or status >= 500:
                    raise ProviderUnavailable(problem)
                raise ProviderRejected(problem)
            mime_type = content_type_of(response, url)
            if not IMAGE.allows(mime_type):
                declared = response.headers.get("content-type", "none")
                raise ProviderRejected(
                    truncate(f"the input image {shown} is not an image ({declared})")
                )
            async for chunk in iter_capped(response, max_bytes=_MAX_IMAGE_BYTES, url=url):
                content += chunk
        return {
            "bytesBase64Encoded": base64.b64encode(content).decode("ascii"),
            "mimeType": mime_type,
        }

    async def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Send one request and return its decoded JSON, mapping failures to provider errors."""
        what = f"Veo {method} {path}"
        response = await send(
            self._http,
            method,
            f"{self._api_base}{path}",
            what=what,
            secret=self._api_key,
            headers={_KEY_HEADER: self._api_key},
            json=body,
        )
        try:
            raise_for_status(response, what=what, secret=self._api_key, problem=_problem)
        except ProviderRateLimited as error:
            if error.retry_after_s is None:
                error.retry_after_s = _retry_info_s(response)
            raise
        return decode_json(response, what=what)

    def _snapshot_from_response(self, data: Any, path: str) -> ProviderSnapshot:
        try:
            return _parse_operation(data)
        except ValueError as exc:
            # A 2xx that is not an operation is Google (or a proxy) misbehaving: transient.
            raise ProviderUnavailable(f"Veo {path} returned no operation: {exc}") from exc


def _operation_path(name: str) -> str:
    # Checked, not quoted: the name is a path of several segments, and only this shape is Veo's.
    if _OPERATION_NAME.fullmatch(name) is None:
        raise ProviderRejected(
            truncate(
                f"invalid Veo operation name {name!r}: expected models/{{model}}/operations/{{id}}"
            )
        )
    return f"/v1beta/{name}"


def _parse_operation(data: Any) -> ProviderSnapshot:
    """Read an operation into a snapshot.

    Raises:
        ValueError: `data` is not an operation (no name).
    """
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("no operation name")
    if data.get("done") is not True:
        return ProviderSnapshot(
            provider_job_id=name, state=ProviderState.PROCESSING, provider_status="running"
        )

    error = data.get("error")
    if error is not None:
        return _failed(name, "failed", _operation_error(error))

    response = data.get("response")
    result = response.get("generateVideoResponse") if isinstance(response, dict) else None
    if not isinstance(result, dict):
        result = {}
    samples = result.get("generatedSamples")
    samples = samples if isinstance(samples, list) else []
    urls = list(dict.fromkeys(url for sample in samples if (url := _video_uri(sample))))
    filtered = result.get("raiMediaFilteredCount")
    reasons = result.get("raiMediaFilteredReasons")
    reasons = [r for r in reasons if isinstance(r, str) and r] if isinstance(reasons, list) else []

    if urls:
        if filtered or reasons:
            logger.info("Veo operation %s: safety filters removed %s of its videos", name, filtered)
        return ProviderSnapshot(
            provider_job_id=name,
            state=ProviderState.SUCCEEDED,
            provider_status="succeeded",
            output_urls=urls,
            progress=1.0,
        )
    if reasons:
        return _failed(name, "filtered", f"blocked by safety filters: {'; '.join(reasons)}")
    if isinstance(filtered, int) and filtered > 0:
        return _failed(
            name, "filtered", f"blocked by safety filters: {filtered} video(s), no reason given"
        )
    if samples:
        return _failed(name, "failed", "Veo finished, but no sample holds a video URI")
    return _failed(
        name, "failed", "Veo finished without a video, a safety-filter reason or an error"
    )


def _failed(name: str, provider_status: str, error: str) -> ProviderSnapshot:
    return ProviderSnapshot(
        provider_job_id=name,
        state=ProviderState.FAILED,
        provider_status=provider_status,
        error=truncate(error),
    )


def _operation_error(error: Any) -> str:
    """An operation's `error`, a google.rpc.Status whose `code` is a gRPC code (3: bad argument)."""
    if not isinstance(error, dict):
        return f"Veo operation failed: {json.dumps(error)}"
    code = error.get("code")
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = json.dumps(error, sort_keys=True)
    return f"Veo operation failed (code {code}): {message}"


def _video_uri(sample: Any) -> str | None:
    """`sample.video.uri` when it is an http(s) URL (a sample may carry inline bytes instead)."""
    video = sample.get("video") if isinstance(sample, dict) else None
    uri = video.get("uri") if isinstance(video, dict) else None
    return uri if isinstance(uri, str) and is_http_url(uri) else None


def _origin(url: str) -> tuple[str, str, int] | None:
    """Scheme, host and port of an http(s) URL (the default port made explicit), else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def _problem(response: httpx.Response) -> str:
    """Google's explanation of an error response: `{"error": {"code", "message", "status"}}`."""
    try:
        data = response.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return response.text.strip() or response.reason_phrase
    status = error.get("status")
    message = error.get("message")
    parts = [part for part in (status, message) if isinstance(part, str) and part]
    return ": ".join(parts) or response.text.strip() or response.reason_phrase


def _retry_info_s(response: httpx.Response) -> float | None:
    """Seconds to wait from the `google.rpc.RetryInfo` in an error's details, if there is one."""
    try:
        data = response.json()
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO:
            delay = detail.get("retryDelay")
            match = _DURATION.fullmatch(delay) if isinstance(delay, str) else None
            if match is not None:
                return float(match.group(1))
    return None
