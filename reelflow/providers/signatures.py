"""Webhook signature schemes, shared by the provider adapters that use them.

Each `verify_*` function checks one scheme's signature and freshness and returns the delivery's
id, which callers use to drop duplicates. Failures raise `WebhookVerificationError` with a short
reason that is safe to log; `SignatureMismatchError` singles out "no signature matches", the one
failure a rotated key can explain, so a caller may refresh its keys and verify once more.

- Standard Webhooks (Replicate): HMAC-SHA256 with a shared secret.
- fal: Ed25519 with public keys published as a JWKS document; `ed25519_keys_from_jwks` reads them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

from reelflow.providers.errors import WebhookVerificationError

__all__ = [
    "SignatureMismatchError",
    "ed25519_keys_from_jwks",
    "parse_verified_body",
    "verify_with_refresh",
    "verify_fal_webhook",
    "verify_standard_webhook",
]

_STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# Standard Webhooks' symmetric (HMAC-SHA256) scheme; `v1a` entries are Ed25519 and not ours.
_HMAC_VERSION = "v1"
# A timestamp has no business being longer; the bound also keeps int() and datetime cheap.
_MAX_TIMESTAMP_DIGITS = 12
# As fal spells them; looked up case-insensitively.
_FAL_REQUEST_ID = "X-Fal-Webhook-Request-Id"
_FAL_USER_ID = "X-Fal-Webhook-User-Id"
_FAL_TIMESTAMP = "X-Fal-Webhook-Timestamp"
_FAL_SIGNATURE = "X-Fal-Webhook-Signature"
_FAL_HEADERS = (_FAL_REQUEST_ID, _FAL_USER_ID, _FAL_TIMESTAMP, _FAL_SIGNATURE)
_ED25519_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64


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
    timestamp = _check_timestamp(
        lowered["webhook-timestamp"], header="webhook-timestamp", tolerance_s=tolerance_s, now=now
    )
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


def verify_fal_webhook(
    *,
    jwks: Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: int = 300,
    now: datetime | None = None,
) -> str:
    """Verify a fal webhook (https://docs.fal.ai, "Verifying Your Webhook").

    fal signs `{request id}\n{user id}\n{timestamp}\n{hex SHA-256 of the body}`, the first three
    taken from the `X-Fal-Webhook-Request-Id`, `-User-Id` and `-Timestamp` headers, with Ed25519;
    `X-Fal-Webhook-Signature` holds the signature in hex. Any one of the published keys may have
    signed it (several are published while fal rotates them).

    Args:
        jwks: fal's public keys, each the raw 32 bytes (see `ed25519_keys_from_jwks`).
        headers: The request's headers; names are matched case-insensitively.
        body: The raw request body, exactly as received.
        tolerance_s: How far the timestamp may be from `now`, either way, in seconds.
        now: The current time (timezone-aware); defaults to the system clock.

    Returns:
        The `X-Fal-Webhook-Request-Id` header: fal's id of the request the webhook reports on.

    Raises:
        SignatureMismatchError: no key verifies the signature.
        WebhookVerificationError: a header is missing or malformed, or the timestamp is outside
            the tolerance.
        ValueError: `jwks` is empty or holds something other than 32-byte keys (a configuration
            error, not the sender's).
    """
    keys = _ed25519_public_keys(jwks)
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in _FAL_HEADERS if not lowered.get(name.lower())]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    request_id = lowered[_FAL_REQUEST_ID.lower()]
    user_id = lowered[_FAL_USER_ID.lower()]
    timestamp = lowered[_FAL_TIMESTAMP.lower()]
    _check_timestamp(timestamp, header=_FAL_TIMESTAMP, tolerance_s=tolerance_s, now=now)
    try:
        signature = bytes.fromhex(lowered[_FAL_SIGNATURE.lower()].strip())
    except ValueError:
        raise WebhookVerificationError(f"{_FAL_SIGNATURE} is not hex") from None
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        raise WebhookVerificationError(f"{_FAL_SIGNATURE} is not an Ed25519 signature")

    # The header values go in as received: they are what fal signed.
    message = "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode()
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return request_id
    raise SignatureMismatchError("no matching signature")


def ed25519_keys_from_jwks(document: Any) -> list[bytes]:
    """The raw Ed25519 public keys of a JWKS document (RFC 7517, keys as in RFC 8037).

    `{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": <base64url>, ...}, ...]}`. Keys of other
    types, keys meant for something other than signatures and keys that do not decode to 32 bytes
    are skipped, so one odd entry cannot stop verification with the others. Duplicates are dropped.

    Raises:
        ValueError: `document` is not a JWKS document (no `keys` list).
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document: no keys list")
    found: list[bytes] = []
    for jwk in document["keys"]:
        if not (
            isinstance(jwk, dict)
            and jwk.get("kty") == "OKP"
            and jwk.get("crv") == "Ed25519"
            and jwk.get("use", "sig") == "sig"
            and isinstance(jwk.get("x"), str)
        ):
            continue
        key = _decode_b64url(jwk["x"])
        if key is not None and len(key) == _ED25519_KEY_BYTES:
            found.append(key)
    return list(dict.fromkeys(found))


_Credentials = TypeVar("_Credentials")
_Parsed = TypeVar("_Parsed")


async def verify_with_refresh(
    credentials: _Credentials,
    verify: Callable[[_Credentials], str],
    refetch: Callable[[_Credentials], Awaitable[_Credentials | None]],
) -> str:
    """`verify(credentials)`; when no signature matches, once more with what `refetch` gives
    in their place (a rotated secret or key set), unless it gives nothing new (None).

    Returns the delivery id `verify` returns.

    Raises:
        WebhookVerificationError: as `verify`, on the last attempt.
    """
    try:
        return verify(credentials)
    except SignatureMismatchError:
        fresh = await refetch(credentials)
        if fresh is None:
            raise
        return verify(fresh)


def parse_verified_body(body: bytes, parse: Callable[[Any], _Parsed], what: str) -> _Parsed:
    """`parse` of a verified webhook's JSON body.

    Raises:
        WebhookVerificationError: the body is not JSON, or not `what` (`parse` raised
            ValueError).
    """
    try:
        return parse(json.loads(body))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise WebhookVerificationError(f"body is not {what}: {exc}") from exc


def _ed25519_public_keys(raw_keys: Sequence[bytes]) -> list[Ed25519PublicKey]:
    if not raw_keys:
        raise ValueError("no public keys to verify the signature with")
    try:
        return [Ed25519PublicKey.from_public_bytes(bytes(key)) for key in raw_keys]
    except ValueError as exc:
        raise ValueError("a public key is not a raw 32-byte Ed25519 key") from exc


def _decode_b64url(value: str) -> bytes | None:
    """Decode unpadded base64url (as JWK members are); None when it is not base64url."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def _check_timestamp(
    value: str, *, header: str, tolerance_s: int, now: datetime | None
) -> datetime:
    """Parse a timestamp header (integer Unix seconds) and check it is within the tolerance."""
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise WebhookVerificationError(f"{header} is not Unix seconds")
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
