"""Fault injection shared by the provider modules: chance, timing, and 429/5xx answers.

Each provider module describes how its API words a rate limit and a transient server error
(`FaultResponses`); `request_faults` turns that into a FastAPI dependency that answers a share of
job creations or status reads with them, as the provider's config section says, before the route
does anything — a rejected creation creates nothing. `delay_create_response` is the opposite
fault: the job is created, and only the answer is late.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reelflow.emulator.config import Provider, ProviderBehaviour
from reelflow.emulator.errors import ProviderHTTPError
from reelflow.emulator.state import StateDep

__all__ = [
    "FaultResponses",
    "Operation",
    "chance",
    "delay_create_response",
    "generation_seconds",
    "request_faults",
]

Operation = Literal["create", "status"]
"""Which rates apply: `create_*` to job creations, `status_*` to status, result and list reads."""


def chance(rate: float) -> bool:
    """True with probability `rate` (never for 0, always for 1)."""
    return rate > 0 and random.random() < rate


def generation_seconds(behaviour: ProviderBehaviour) -> float:
    """How long one job takes: `generation_seconds`, give or take up to the jitter."""
    jitter = behaviour.generation_jitter_seconds
    return max(0.0, behaviour.generation_seconds + random.uniform(-jitter, jitter))


@dataclass(frozen=True)
class FaultResponses:
    """How one provider answers when it rate-limits or fails a request."""

    rate_limited: Callable[[int], ProviderHTTPError]
    """The 429 for a reset hint of so many seconds."""

    unavailable: Callable[[], ProviderHTTPError]
    """A transient 5xx."""


def request_faults(
    provider: Provider, operation: Operation, responses: FaultResponses
) -> Callable[[StateDep], None]:
    """A dependency injecting `provider`'s 429s and 5xxs into one kind of request.

    Use it after authentication (a provider rate-limits an account, not anonymous traffic).
    """

    def inject(state: StateDep) -> None:
        behaviour = state.config.behaviour(provider)
        stats = state.stats[provider]
        if operation == "create":
            rate_429, rate_5xx = behaviour.create_429_rate, behaviour.create_5xx_rate
        else:
            rate_429, rate_5xx = behaviour.status_429_rate, behaviour.status_5xx_rate
        if chance(rate_429):
            stats.injected_429s += 1
            raise responses.rate_limited(behaviour.rate_limit_reset_seconds)
        if chance(rate_5xx):
            stats.injected_5xxs += 1
            raise responses.unavailable()

    return inject


async def delay_create_response(behaviour: ProviderBehaviour) -> None:
    """Wait `create_response_delay_seconds`; a route calls it after creating its job.

    The job exists, runs and counts whatever happens to the caller meanwhile: a caller that
    disconnects or dies during the wait never learns the job's id.
    """
    delay = behaviour.create_response_delay_seconds
    if delay > 0:
        await asyncio.sleep(delay)
