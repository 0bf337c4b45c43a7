"""Webhook signature schemes, shared by the provider adapters that use them.

Each function checks one scheme's signature and freshness and returns the delivery's id, which
callers use to drop duplicates. Failures raise `WebhookVerificationError` with a short reason that
is safe to log; `SignatureMismatchError` singles out "no signature matches", the one failure a
rotated key can explain, so a caller may refresh its key and verify once more.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

from reelflow.providers.errors import WebhookVerificationError

__all__ = ["SignatureMismatchError", "verify_standard_webhook"]

_STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# Standard Webhooks' symmetric (HMAC-SHA256) scheme; `v1a` entries are Ed25519 and not ours.
_HMAC_VERSION = "v1"
# A timestamp has no business being longer; the bound also keeps int() and datetime cheap.
_MAX_TIMESTAMP_DIGITS = 12


class SignatureMismatchError(WebhookVerificationError):
    """The headers and timestamp are fine but no signature matches the key."""


def verify_standard_webhook(
    *,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: int = 300,
    now: datetime | None = None,
) -> str:
    """Verify a Standard Webhooks delivery (https://www.standardwebhooks.com).

    The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 keyed with the
    base64 part of the `whsec_` secret; `webhook-signature` holds one or more space-separated
    `v1,<base64>` entries (several during a key rotation) and one match is enough.

    `standardwebhooks.Webhook.verify` hard-codes a 5-minute tolerance against the real clock, so
    this function checks the headers and timestamp itself and uses the library for the secret's
    decoding and the signature.

    Args:
        secret: The signing secret, `whsec_<base64>` (the prefix is optional).
        headers: The request's headers; names are matched case-insensitively.
        body: The raw request body, exactly as received.
        tolerance_s: How far the timestamp may be from `now`, either way, in seconds.
        now: The current time (timezone-aware); defaults to the system clock.

    Returns:
        The `webhook-id` header, for deduplication.

    Raises:
        SignatureMismatchError: no `v1` signature matches.
        WebhookVerificationError: a header is missing or malformed, the timestamp is outside the
            tolerance or the body is not UTF-8.
        ValueError: the secret is not a usable key (a configuration error, not the sender's).
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in _STANDARD_HEADERS if not lowered.get(name)]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    msg_id = lowered["webhook-id"]
    timestamp = _check_timestamp(lowered["webhook-timestamp"], tolerance_s=tolerance_s, now=now)
    try:
        # The library signs text; strict decoding keeps the bytes it re-encodes identical.
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookVerificationError("body is not UTF-8") from exc

    signed = _signer(secret).sign(msg_id=msg_id, timestamp=timestamp, data=text)
    expected = base64.b64decode(signed.partition(",")[2])
    for entry in lowered["webhook-signature"].split():
        version, _, encoded = entry.partition(",")
        candidate = _decode_b64(encoded) if version == _HMAC_VERSION else None
        # compare_digest keeps the comparison time independent of where the bytes differ.
        if candidate is not None and hmac.compare_digest(expected, candidate):
            return msg_id
    raise SignatureMismatchError("no matching signature")


def _check_timestamp(value: str, *, tolerance_s: int, now: datetime | None) -> datetime:
    """Parse `webhook-timestamp` (integer Unix seconds) and check it is within the tolerance."""
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise WebhookVerificationError("webhook-timestamp is not Unix seconds")
    seconds = int(value)
    current = (now or datetime.now(UTC)).timestamp()
    if seconds < current - tolerance_s:
        raise WebhookVerificationError("timestamp too old")
    if seconds > current + tolerance_s:
        raise WebhookVerificationError("timestamp too far in the future")
    return datetime.fromtimestamp(seconds, UTC)


def _signer(secret: str) -> Webhook:
    """The library's signer for `secret` (it strips `whsec_` and decodes the base64 key)."""
    try:
        return Webhook(secret)
    except (binascii.Error, EmptyWebhookSecretError) as exc:
        raise ValueError("webhook secret is not a whsec_ base64 key") from exc


def _decode_b64(value: str) -> bytes | None:
    """Decode one signature entry; a malformed entry is skipped rather than fatal."""
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return None
