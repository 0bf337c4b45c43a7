"""Webhook delivery shared by every emulated provider, and Standard Webhooks signing.

Deliveries run in background tasks on one shared `httpx.AsyncClient`, so an API handler that
triggers a webhook never waits for the receiver. Deliveries that share an ordering key (one job)
go out one after the other, in the order they were sent, as a provider's would.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from reelflow.emulator.config import EmulatorConfig

__all__ = ["WebhookDelivery", "WebhookSender", "standard_webhooks_signer"]

logger = logging.getLogger(__name__)

_BASE62 = string.digits + string.ascii_letters


@dataclass(frozen=True)
class WebhookDelivery:
    """One webhook message, possibly delivered in several attempts."""

    url: str
    """Receiver URL."""

    body: bytes
    """JSON body, sent byte for byte as signed."""

    sign: Callable[[], dict[str, str]]
    """Signature headers for one attempt (called per attempt: timestamps must be fresh)."""

    final: bool
    """Whether this is a job's terminal webhook, the only kind providers retry."""


def standard_webhooks_signer(secret: str, body: bytes) -> Callable[[], dict[str, str]]:
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


class WebhookSender:
    """Delivers webhooks in the background, in order per key, retrying final ones."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        """Deliver with `client`, which the caller owns and closes."""
        self._client = client
        self._last: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, key: str, delivery: WebhookDelivery, config: EmulatorConfig) -> None:
        """Queue `delivery` after the earlier deliveries of `key`; returns at once.

        Args:
            key: Ordering key, normally the job id.
            delivery: What to send.
            config: Timeout and retry policy, as they were when the event happened.
        """
        previous = self._last.get(key)
        task = asyncio.create_task(self._deliver_after(previous, delivery, config))
        self._last[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._forget(key, done))

    async def cancel_all(self) -> None:
        """Abandon every pending delivery and wait until none is running."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._last.get(key) is task:
            del self._last[key]

    async def _deliver_after(
        self,
        previous: asyncio.Task[None] | None,
        delivery: WebhookDelivery,
        config: EmulatorConfig,
    ) -> None:
        if previous is not None:
            # `wait` rather than `await`: an earlier delivery's failure must not stop this one.
            await asyncio.wait([previous])
        await self._deliver(delivery, config)

    async def _deliver(self, delivery: WebhookDelivery, config: EmulatorConfig) -> None:
        attempts = 1 + (config.webhook_retries if delivery.final else 0)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(config.webhook_retry_backoff_seconds * 2 ** (attempt - 2))
            headers = {"content-type": "application/json", **delivery.sign()}
            try:
                response = await self._client.post(
                    delivery.url,
                    content=delivery.body,
                    headers=headers,
                    timeout=config.webhook_timeout_seconds,
                )
            except httpx.HTTPError as error:
                outcome = f"{type(error).__name__}: {error}"
            else:
                if response.is_success:
                    return
                outcome = f"HTTP {response.status_code}"
            logger.warning(
                "Webhook to %s failed (attempt %d of %d): %s",
                delivery.url,
                attempt,
                attempts,
                outcome,
            )
        logger.warning("Giving up on webhook to %s after %d attempts", delivery.url, attempts)
