"""Plumbing shared by the provider adapters that speak HTTP.

Sending a request and mapping its failures onto `reelflow.providers.errors`, the way every
adapter does it: 429 is `ProviderRateLimited` (with the `Retry-After` hint), other 5xx, timeouts
and network errors are `ProviderUnavailable`, other 4xx are `ProviderRejected`. Messages are
shortened and have the adapter's credential blanked out, because they end up in logs, Temporal
history and the status API. Also here: reading progress from a model's logs, which Replicate and
fal both expose as free text.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from reelflow.providers.errors import ProviderRateLimited, ProviderRejected, ProviderUnavailable

__all__ = [
    "MAX_MESSAGE_CHARS",
    "decode_json",
    "is_http_url",
    "progress_from_logs",
    "raise_for_status",
    "redact",
    "retry_after_s",
    "send",
    "truncate",
]

# Messages end up in Temporal history and the status API; a model's traceback or a proxy's HTML
# error page should not.
MAX_MESSAGE_CHARS: Final = 1000
# The last `NN%` of a line (tqdm's `45%|████▌ | 45/100`) …
_PERCENT: Final = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d+)?)%")
# … or else its last `n/m` standing alone, so paths and dates (`2024/05/01`) do not count.
_STEPS: Final = re.compile(r"(?<![\w./])(\d+)/(\d+)(?![\w./])")


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    what: str,
    secret: str,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    params: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request; a timeout or network failure becomes `ProviderUnavailable`.

    Args:
        http: The caller's client (its timeouts apply; it does not retry).
        method: HTTP method.
        url: Absolute URL.
        what: How messages name the request, e.g. `Replicate GET /v1/predictions/x`.
        secret: The credential to keep out of messages.
        headers: Request headers, e.g. the authorization.
        json: JSON body, if any.
        params: Query parameters, if any.

    Raises:
        ProviderUnavailable: the request timed out or could not be sent.
    """
    try:
        return await http.request(method, url, headers=headers, json=json, params=params)
    except httpx.TimeoutException as exc:
        error = ProviderUnavailable(redact(f"{what} timed out: {type(exc).__name__}", secret))
    except httpx.TransportError as exc:
        error = ProviderUnavailable(redact(f"{what} failed: {type(exc).__name__}: {exc}", secret))
    # Raised outside the handlers so that the error has neither cause nor context: the httpx
    # error carries its unredacted text and the request, authorization header included, and
    # either would follow the message into logs and Temporal failures.
    raise error


def raise_for_status(
    response: httpx.Response,
    *,
    what: str,
    secret: str,
    problem: Callable[[httpx.Response], str],
) -> None:
    """Raise the provider error an unsuccessful response stands for; do nothing on 2xx.

    Args:
        response: The response to check.
        what: How messages name the request.
        secret: The credential to keep out of messages.
        problem: Reads the provider's explanation out of an error response.

    Raises:
        ProviderRateLimited: 429, with the `Retry-After` hint when there is one.
        ProviderUnavailable: 5xx, or a status that is neither success nor error (1xx, 3xx).
        ProviderRejected: any other 4xx.
    """
    status = response.status_code
    if status == 429:
        raise ProviderRateLimited(
            redact(f"{what} was rate limited (429): {problem(response)}", secret),
            retry_after_s=retry_after_s(response.headers.get("retry-after")),
        )
    if status >= 500:
        raise ProviderUnavailable(redact(f"{what} answered {status}: {problem(response)}", secret))
    if status >= 400:
        raise ProviderRejected(redact(f"{what} answered {status}: {problem(response)}", secret))
    if not response.is_success:
        raise ProviderUnavailable(f"{what} answered unexpected {status}")


def decode_json(response: httpx.Response, *, what: str) -> Any:
    """The response's JSON body.

    Raises:
        ProviderUnavailable: the body is not JSON (a provider or proxy misbehaving: transient).
    """
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderUnavailable(
            f"{what} answered {response.status_code} with a body that is not JSON"
        ) from exc


def redact(text: str, secret: str) -> str:
    """Shorten a message and blank out `secret`, in case a server or proxy echoed it."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return truncate(text)


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delay-seconds or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def is_http_url(value: str) -> bool:
    """Whether `value` is an absolute http(s) URL."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def progress_from_logs(logs: str) -> float | None:
    """Fraction done from the last line of `logs` that shows a percentage or an `n/m` step."""
    # splitlines also splits on `\r`, which tqdm uses to redraw its bar in place.
    for line in reversed(logs.splitlines()):
        percents = [float(p) for p in _PERCENT.findall(line) if float(p) <= 100]
        if percents:
            return percents[-1] / 100
        steps = [(int(n), int(m)) for n, m in _STEPS.findall(line)]
        sensible = [(done, total) for done, total in steps if 0 < total and done <= total]
        if sensible:
            done, total = sensible[-1]
            return done / total
    return None
