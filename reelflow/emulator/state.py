"""State shared by the emulator's routers: configuration, statistics, outputs and webhooks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from reelflow.emulator.config import EmulatorConfig
from reelflow.emulator.outputs import OutputStore
from reelflow.emulator.webhooks import WebhookSender

__all__ = ["EmulatorState", "ProviderBackend", "StateDep", "Stats", "get_state"]


@dataclass
class Stats:
    """What the emulator has been asked to do since it started or was reset."""

    created: int = 0
    """Jobs created, across providers."""

    canceled: int = 0
    """Jobs canceled while still running."""

    created_per_webhook: Counter[str] = field(default_factory=Counter)
    """Jobs created per webhook URL: proves a client did not start the same job twice."""

    def record_created(self, webhook: str | None) -> None:
        """Count one created job and its webhook URL, if it has one."""
        self.created += 1
        if webhook is not None:
            self.created_per_webhook[webhook] += 1

    def as_json(self) -> dict[str, Any]:
        """The body of `GET /_emulator/stats`."""
        return {
            "created": self.created,
            "canceled": self.canceled,
            "created_per_webhook": dict(self.created_per_webhook),
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

    backends: list[ProviderBackend] = field(default_factory=list)
    """Each provider's job store."""

    async def reset(self) -> None:
        """Stop and forget all jobs, pending webhooks, outputs and statistics."""
        for backend in self.backends:
            await backend.reset()
        await self.webhooks.cancel_all()
        self.outputs.clear()
        self.stats = Stats()


def get_state(request: Request) -> EmulatorState:
    """The app's `EmulatorState` (a FastAPI dependency)."""
    state: EmulatorState = request.app.state.emulator
    return state


StateDep = Annotated[EmulatorState, Depends(get_state)]
