"""State shared by the emulator's routers: configuration, statistics, outputs and webhooks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, Request

from reelflow.emulator.config import PROVIDERS, EmulatorConfig, Provider
from reelflow.emulator.outputs import OutputStore

if TYPE_CHECKING:
    # Only annotations: the webhook module depends on this one (through the fault helpers).
    from reelflow.emulator.webhooks import WebhookSender

__all__ = [
    "EmulatorState",
    "ProviderBackend",
    "ProviderStats",
    "StateDep",
    "Stats",
    "get_state",
]


@dataclass
class ProviderStats:
    """What one provider has been asked to do, and which faults it injected."""

    created: int = 0
    """Jobs created."""

    canceled: int = 0
    """Jobs canceled while still running."""

    created_per_webhook: Counter[str] = field(default_factory=Counter)
    """Jobs created per webhook URL: proves a client did not start the same job twice."""

    webhooks_sent: int = 0
    """Webhook messages sent (once each, however many attempts it took)."""

    webhooks_dropped: int = 0
    """Webhook messages never sent, by `webhook_drop_rate`."""

    webhooks_duplicated: int = 0
    """Webhook messages sent a second time, by `webhook_duplicate_rate`."""

    injected_429s: int = 0
    """Requests answered 429 by `create_429_rate` or `status_429_rate`."""

    injected_5xxs: int = 0
    """Requests answered 5xx by `create_5xx_rate` or `status_5xx_rate`."""

    output_downloads: int = 0
    """GET requests that received an output file."""

    def record_created(self, webhook: str | None) -> None:
        """Count one created job and its webhook URL, if it has one."""
        self.created += 1
        if webhook is not None:
            self.created_per_webhook[webhook] += 1

    def as_json(self) -> dict[str, Any]:
        """This provider's part of `GET /_emulator/stats`."""
        return {
            "created": self.created,
            "canceled": self.canceled,
            "created_per_webhook": dict(self.created_per_webhook),
            "webhooks_sent": self.webhooks_sent,
            "webhooks_dropped": self.webhooks_dropped,
            "webhooks_duplicated": self.webhooks_duplicated,
            "injected_429s": self.injected_429s,
            "injected_5xxs": self.injected_5xxs,
            "output_downloads": self.output_downloads,
        }


@dataclass
class Stats:
    """What the emulator has been asked to do since it started or was reset, per provider."""

    providers: dict[Provider, ProviderStats] = field(
        default_factory=lambda: {provider: ProviderStats() for provider in PROVIDERS}
    )

    def __getitem__(self, provider: Provider) -> ProviderStats:
        return self.providers[provider]

    def as_json(self) -> dict[str, Any]:
        """The body of `GET /_emulator/stats`: each provider's counts, and totals across them.

        The totals are `created`, `canceled` and `created_per_webhook` (webhook URLs are unique
        to a job, so one merged map shows any job created twice, whatever its provider).
        """
        per_webhook: Counter[str] = Counter()
        for stats in self.providers.values():
            per_webhook.update(stats.created_per_webhook)
        return {
            **{provider: stats.as_json() for provider, stats in self.providers.items()},
            "created": sum(stats.created for stats in self.providers.values()),
            "canceled": sum(stats.canceled for stats in self.providers.values()),
            "created_per_webhook": dict(per_webhook),
        }


class ProviderBackend(Protocol):
    """What the app needs from each provider module's job store."""

    async def reset(self) -> None:
        """Stop every running job and forget all jobs."""
        ...


@dataclass
class EmulatorState:
    """Everything the routers share, created in the app's lifespan."""

    config: EmulatorConfig
    """Current configuration; replaced as a whole by `PATCH /_emulator/config`."""

    outputs: OutputStore
    """Generated files."""

    webhooks: WebhookSender
    """Background webhook delivery."""

    stats: Stats = field(default_factory=Stats)
    """Counters for `GET /_emulator/stats`."""

    backends: dict[Provider, ProviderBackend] = field(default_factory=dict)
    """Each provider's job store."""

    async def reset(self) -> None:
        """Stop and forget all jobs, pending webhooks, outputs and statistics."""
        for backend in self.backends.values():
            await backend.reset()
        await self.webhooks.cancel_all()
        self.outputs.clear()
        self.stats = Stats()


def get_state(request: Request) -> EmulatorState:
    """The app's `EmulatorState` (a FastAPI dependency)."""
    state: EmulatorState = request.app.state.emulator
    return state


StateDep = Annotated[EmulatorState, Depends(get_state)]
