"""API keys and tenants, and the per-job tokens that webhook URLs carry.

Keys are held only as SHA-256 digests and compared in constant time; a webhook token is an HMAC
of the job record id under a server secret, so it cannot be guessed from the id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

__all__ = [
    "DEFAULT_TENANT",
    "ApiKeys",
    "InvalidApiKeys",
    "is_loopback",
    "load_webhook_secret",
    "webhook_token",
    "webhook_token_valid",
]

logger = logging.getLogger(__name__)

# The tenant of every execution when no API keys are configured (a single-user install).
DEFAULT_TENANT = "default"
_MIN_KEY_LENGTH = 16


class InvalidApiKeys(ValueError):
    """`REELFLOW_API_KEYS` is malformed; the message never contains a key."""


@dataclass(frozen=True)
class _Entry:
    tenant: str
    digest: bytes


class ApiKeys:
    """The configured keys: `tenant:key` pairs separated by commas."""

    def __init__(self, spec: SecretStr | None) -> None:
        self._entries: list[_Entry] = []
        if spec is None:
            return
        for position, item in enumerate(spec.get_secret_value().split(","), start=1):
            tenant, separator, key = item.strip().partition(":")
            if not separator or not tenant or not key:
                raise InvalidApiKeys(f"REELFLOW_API_KEYS entry {position} is not tenant:key")
            if len(key) < _MIN_KEY_LENGTH:
                raise InvalidApiKeys(
                    f"REELFLOW_API_KEYS entry {position} ({tenant}): keys need at least"
                    f" {_MIN_KEY_LENGTH} characters"
                )
            self._entries.append(_Entry(tenant, _digest(key)))

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else the API is open, and bound to loopback only)."""
        return bool(self._entries)

    def tenant_for(self, presented: str) -> str | None:
        """The tenant owning `presented`, or None; takes the same time whichever key matches."""
        digest = _digest(presented)
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.tenant
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the API on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_webhook_secret(configured: SecretStr | None, state_dir: Path) -> bytes:
    """The secret of webhook tokens: `WEBHOOK_TOKEN_SECRET`, else one kept in the state dir.

    Every API process must share it (webhook URLs outlive the process that made them): set it
    explicitly in a cluster; on one machine the state dir's copy is created once and reused.
    """
    if configured is not None:
        return configured.get_secret_value().encode()
    path = state_dir / "webhook-token-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting together keep the first one's secret.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(32))
            logger.info("Created a webhook token secret in %s", path)
    return path.read_text().strip().encode()


def webhook_token(secret: bytes, job_record_id: str) -> str:
    """The token a job's webhook URL carries."""
    mac = hmac.new(secret, f"webhook:{job_record_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def webhook_token_valid(secret: bytes, job_record_id: str, token: str | None) -> bool:
    """Whether `token` is this job's, compared in constant time."""
    if not token:
        return False
    return hmac.compare_digest(webhook_token(secret, job_record_id).encode(), token.encode())
