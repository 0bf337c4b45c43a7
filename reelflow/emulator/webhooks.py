"""Webhook delivery shared by every emulated provider, its faults, and the providers' signatures.

Deliveries run in background tasks on one shared `httpx.AsyncClient`, so an API handler that
triggers a webhook never waits for the receiver. Deliveries that share an ordering key (one job)
go out one after the other, in the order they were sent, as a provider's would — unless the
provider's `webhook_reorder_rate` holds one back. The provider's other webhook knobs drop a
delivery, send it twice or delay it; each is decided when the delivery is sent, from the config
of that moment.

Signatures: `standard_webhooks_signer` signs as Replicate does (Standard Webhooks, HMAC-SHA256);
`fal_webhook_signer` signs as fal does (Ed25519 over request id, user id, timestamp and the body's
SHA-256), with the public key published by `fal_jwks`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import secrets
import string
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from standardwebhooks import Webhook

from reelflow.emulator.config import EmulatorConfig, Provider
from reelflow.emulator.faults import chance
from reelflow.netguard import redact_url

__all__ = [
    "WebhookDelivery",
    "WebhookSender",
    "WebhookStats",
    "fal_jwks",
    "fal_webhook_signer",
    "standard_webhooks_signer",
]

logger = logging.getLogger(__name__)

_BASE62 = string.digits + string.ascii_letters

Signer = Callable[[], dict[str, str]]
"""Gives the signature headers of one delivery attempt."""


class WebhookStats(Protocol):
    """The webhook counters of one provider, which the sender keeps up to date."""

    webhooks_sent: int
    """Webhook messages sent (once each, however many attempts it took)."""

    webhooks_dropped: int
    """Messages never sent, by `webhook_drop_rate`."""

    webhooks_duplicated: int
    """Messages sent a second time, by `webhook_duplicate_rate`."""


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook message, possibly delivered in several attempts."""

    provider: Provider
    """Whose webhook this is: its config section decides the faults."""

    url: str
    """Receiver URL."""

    body: bytes
    """JSON body, sent byte for byte as signed."""

    sign: Signer
    """Signature headers for one attempt (called per attempt: timestamps must be fresh)."""

    final: bool
    """Whether this is a job's terminal webhook: the kind providers retry, never held back."""


def standard_webhooks_signer(secret: str, body: bytes) -> Signer:
    """Sign `body` the Standard Webhooks way, as Replicate does.

    Every attempt carries the same `webhook-id` (`msg_` + 27 base62 characters, the id receivers
    deduplicate on) with the current `webhook-timestamp`, and `webhook-signature` is
    `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed by the base64 key after `whsec_`.

    Args:
        secret: `whsec_<base64>` signing secret.
        body: The exact bytes that will be sent.

    Returns:
        A function giving the headers for one attempt.
    """
    webhook = Webhook(secret)
    message_id = "msg_" + "".join(secrets.choice(_BASE62) for _ in range(27))
    text = body.decode()

    def sign() -> dict[str, str]:
        now = datetime.now(UTC)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(message_id, now, text),
        }

    return sign


def fal_webhook_signer(signing_key: str, *, user_id: str, request_id: str, body: bytes) -> Signer:
    """Sign `body` as fal signs its webhooks.

    `X-Fal-Webhook-Signature` is the hex Ed25519 signature of the UTF-8 lines
    `request_id`, `user_id`, `timestamp` and the hex SHA-256 of the body, joined by `\\n`;
    the other three `X-Fal-Webhook-*` headers carry the signed values, the timestamp being the
    attempt's Unix time in seconds.

    Args:
        signing_key: Ed25519 private key, the hex of its 32-byte seed.
        user_id: The account the webhook belongs to.
        request_id: The queue request the webhook reports on.
        body: The exact bytes that will be sent.

    Returns:
        A function giving the headers for one attempt.
    """
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(signing_key))
    body_hash = hashlib.sha256(body).hexdigest()

    def sign() -> dict[str, str]:
        timestamp = str(int(datetime.now(UTC).timestamp()))
        message = "\n".join((request_id, user_id, timestamp, body_hash)).encode()
        return {
            "x-fal-webhook-request-id": request_id,
            "x-fal-webhook-user-id": user_id,
            "x-fal-webhook-timestamp": timestamp,
            "x-fal-webhook-signature": key.sign(message).hex(),
        }

    return sign


def fal_jwks(signing_key: str) -> dict[str, Any]:
    """The JSON Web Key Set publishing the public half of `signing_key` (RFC 8037 OKP key)."""
    public = (
        Ed25519PrivateKey.from_private_bytes(bytes.fromhex(signing_key))
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": base64.urlsafe_b64encode(public).rstrip(b"=").decode("ascii"),
                "kid": hashlib.sha256(public).hexdigest()[:16],
                "use": "sig",
                "alg": "EdDSA",
            }
        ]
    }


@dataclass(frozen=True)
class _Pending:
    """A delivery with the faults and policy decided for it when it was sent."""

    delivery: WebhookDelivery
    stats: WebhookStats
    delay_seconds: float
    duplicate: bool
    attempts: int
    timeout_seconds: float
    retry_backoff_seconds: float


class WebhookSender:
    """Delivers webhooks in the background, in order per key, retrying final ones."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        """Deliver with `client`, which the caller owns and closes."""
        self._client = client
        self._last: dict[str, asyncio.Task[None]] = {}
        self._held: defaultdict[str, list[_Pending]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()

    def send(
        self, key: str, delivery: WebhookDelivery, *, config: EmulatorConfig, stats: WebhookStats
    ) -> None:
        """Queue `delivery` after the earlier deliveries of `key`; returns at once.

        Args:
            key: Ordering key, normally the job id.
            delivery: What to send.
            config: Faults, timeout and retry policy, as they are when the event happens.
            stats: The provider's counters.
        """
        behaviour = config.behaviour(delivery.provider)
        if chance(behaviour.webhook_drop_rate):
            stats.webhooks_dropped += 1
            logger.info("Dropping a webhook to %s (webhook_drop_rate)", redact_url(delivery.url))
            return
        pending = _Pending(
            delivery=delivery,
            stats=stats,
            delay_seconds=random.uniform(0, behaviour.webhook_delay_seconds),
            duplicate=chance(behaviour.webhook_duplicate_rate),
            attempts=1 + (config.webhook_retries if delivery.final else 0),
            timeout_seconds=config.webhook_timeout_seconds,
            retry_backoff_seconds=config.webhook_retry_backoff_seconds,
        )
        if not delivery.final and chance(behaviour.webhook_reorder_rate):
            # Goes out right after the key's next delivery, or when the job ends.
            self._held[key].append(pending)
            return
        self._enqueue(key, pending)
        self.release(key)

    def release(self, key: str) -> None:
        """Queue the deliveries of `key` held back for reordering; call when a job has ended."""
        for pending in self._held.pop(key, []):
            self._enqueue(key, pending)

    async def cancel_all(self) -> None:
        """Abandon every pending and held-back delivery and wait until none is running."""
        self._held.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _enqueue(self, key: str, pending: _Pending) -> None:
        previous = self._last.get(key)
        task = asyncio.create_task(self._deliver_after(previous, pending))
        self._last[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._forget(key, done))

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._last.get(key) is task:
            del self._last[key]

    async def _deliver_after(self, previous: asyncio.Task[None] | None, pending: _Pending) -> None:
        if previous is not None:
            # `wait` rather than `await`: an earlier delivery's failure must not stop this one.
            await asyncio.wait([previous])
        await asyncio.sleep(pending.delay_seconds)
        pending.stats.webhooks_sent += 1
        headers = await self._deliver(pending)
        if pending.duplicate:
            # The very same signed request again, as an at-least-once sender may do.
            pending.stats.webhooks_duplicated += 1
            await self._post(pending, headers)

    async def _deliver(self, pending: _Pending) -> dict[str, str]:
        """Attempt the delivery until accepted or out of attempts; the last attempt's headers."""
        delivery = pending.delivery
        headers: dict[str, str] = {}
        for attempt in range(1, pending.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(pending.retry_backoff_seconds * 2 ** (attempt - 2))
            headers = {"content-type": "application/json", **delivery.sign()}
            outcome = await self._post(pending, headers)
            if outcome is None:
                return headers
            logger.warning(
                "Webhook to %s failed (attempt %d of %d): %s",
                redact_url(delivery.url),
                attempt,
                pending.attempts,
                outcome,
            )
        logger.warning(
            "Giving up on webhook to %s after %d attempts",
            redact_url(delivery.url),
            pending.attempts,
        )
        return headers

    async def _post(self, pending: _Pending, headers: dict[str, str]) -> str | None:
        """POST the delivery once; None if the receiver accepted it, else what went wrong."""
        try:
            response = await self._client.post(
                pending.delivery.url,
                content=pending.delivery.body,
                headers=headers,
                timeout=pending.timeout_seconds,
            )
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"
        return None if response.is_success else f"HTTP {response.status_code}"
