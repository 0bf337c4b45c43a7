"""Errors raised by provider adapters.

ProviderError                 base class, catch this
├── ProviderRejected          the provider refused the request (4xx): retrying will not help
├── ProviderUnavailable       5xx, timeouts, network errors: retry with backoff
│   └── ProviderRateLimited   429: retry after `retry_after_s`
├── OutputExpired             the output URL is gone (the provider deletes outputs after a while)
└── WebhookVerificationError  a webhook's signature, timestamp or body is not acceptable
"""

from __future__ import annotations

__all__ = [
    "OutputExpired",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderUnavailable",
    "WebhookVerificationError",
]


class ProviderError(Exception):
    """Base class of every provider error."""


class ProviderRejected(ProviderError):
    """The provider refused the request; the message is the provider's own."""


class ProviderUnavailable(ProviderError):
    """A transient failure: server error, timeout or network error."""


class ProviderRateLimited(ProviderUnavailable):
    """HTTP 429; `retry_after_s` is the provider's hint, when it gave one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OutputExpired(ProviderError):
    """An output URL answered 404/410: the provider has deleted it."""


class WebhookVerificationError(ProviderError):
    """A webhook failed verification; nothing in it may be trusted."""
