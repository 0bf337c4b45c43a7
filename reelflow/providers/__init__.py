"""Provider adapters and the model registry."""

from __future__ import annotations

import httpx

from reelflow.config import Settings
from reelflow.netguard import HostAllowlist
from reelflow.providers.base import Provider
from reelflow.providers.fal import FalProvider
from reelflow.providers.replicate import ReplicateProvider
from reelflow.providers.veo import VeoProvider

__all__ = ["Provider", "build_providers"]


def build_providers(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    image_http: httpx.AsyncClient | None = None,
    image_hosts: HostAllowlist | None = None,
) -> dict[str, Provider]:
    """One adapter per provider whose credentials are configured, keyed by provider name.

    `image_http` (a `reelflow.netguard.guarded_client`) and `image_hosts` guard the input
    images Veo downloads; the worker passes them, the API (which starts no jobs) need not.
    """
    providers: dict[str, Provider] = {}
    if settings.replicate_api_token is not None:
        secret = settings.replicate_webhook_secret
        providers["replicate"] = ReplicateProvider(
            http=http,
            api_base=settings.replicate_api_base,
            token=settings.replicate_api_token.get_secret_value(),
            webhook_secret=secret.get_secret_value() if secret else None,
        )
    if settings.fal_key is not None:
        providers["fal"] = FalProvider(
            http=http,
            queue_base=settings.fal_queue_base,
            api_key=settings.fal_key.get_secret_value(),
            jwks_url=settings.fal_jwks_url,
        )
    if settings.gemini_api_key is not None:
        providers["veo"] = VeoProvider(
            http=http,
            api_base=settings.gemini_api_base,
            api_key=settings.gemini_api_key.get_secret_value(),
            image_http=image_http,
            image_hosts=image_hosts,
        )
    return providers
