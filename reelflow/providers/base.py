"""The interface every provider adapter implements; a new provider is one module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from reelflow.types import ProviderSnapshot

__all__ = ["Provider"]


class Provider(Protocol):
    """A video generation provider reached over HTTP.

    Implementations raise only `reelflow.providers.errors` exceptions and never retry on their
    own: Temporal owns retries so that every attempt is visible in the workflow's history.
    """

    name: str
    """Registry name, e.g. `replicate`."""

    async def create(
        self, *, model_path: str, inputs: Mapping[str, Any], webhook_url: str | None
    ) -> ProviderSnapshot:
        """Start a job. `webhook_url` None means the caller will poll."""
        ...

    async def get(self, provider_job_id: str, *, model_path: str) -> ProviderSnapshot:
        """Current state of a job (some providers address jobs under their model's path)."""
        ...

    async def cancel(self, provider_job_id: str, *, model_path: str) -> None:
        """Ask the provider to stop (and stop billing) a job; a finished job is not an error."""
        ...

    async def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> ProviderSnapshot:
        """Verify a webhook's signature and freshness, then parse it.

        Raises:
            WebhookVerificationError: the signature, timestamp or body is not acceptable.
            ProviderError: what verification needs (a signing secret, keys) could not be had.
        """
        ...

    def download_headers(self, url: str) -> dict[str, str]:
        """Headers needed to download an output URL (empty for public CDN URLs)."""
        ...
