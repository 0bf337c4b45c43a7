"""Provider adapters and the model registry."""

from __future__ import annotations

import httpx

from reelflow.config import Settings
from reelflow.providers.base import Provider
from reelflow.providers.replicate import ReplicateProvider

__all__ = ["Provider", "build_providers"]


def build_providers(settings: Settings, http: httpx.AsyncClient) -> dict[str, Provider]:
    """One adapter per provider whose credentials are configured, keyed by provider name."""
    providers: dict[str, Provider] = {}
    if settings.replicate_api_token is not None:
        secret = settings.replicate_webhook_secret
        providers["replicate"] = ReplicateProvider(
            http=http,
            api_base=settings.replicate_api_base,
            token=settings.replicate_api_token.get_secret_value(),
            webhook_secret=secret.get_secret_value() if secret else None,
        )
    return providers
