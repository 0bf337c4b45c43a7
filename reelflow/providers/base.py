"""The interface every provider adapter implements; a new provider is one module."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
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

    async def find_existing(
        self, *, model_path: str, webhook_url: str | None, created_after: datetime
    ) -> ProviderSnapshot | None:
        """A job this client already created for this job record, if the provider can tell.

        For a start activity retried after its worker died between `create` and recording the
        job's id: finding the job it created spares creating (and paying for) a second one.
        The webhook URL is unique per job record, so it is what identifies the job; a job
        created without one (a polling job) cannot be found, and neither can one at a provider
        that offers no way to look a job up by a value the client chose. None means "not found
        or cannot tell", never "certainly not created".

        Args:
            model_path: The model the job was created for, as given to `create`.
            webhook_url: The webhook URL given to `create`; None for a polling job.
            created_after: A moment before the job could have been created (timezone-aware);
                allow for clock skew between this host and the provider.

        Raises:
            ValueError: `created_after` is naive.
            ProviderRejected: the provider refused the lookup (e.g. a bad credential).
            ProviderUnavailable: a transient failure, including rate limiting.
        """
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
