"""The emulator's knobs: where it is reachable, how long jobs take, and which faults it injects.

Every knob lives on `EmulatorConfig` so that `PATCH /_emulator/config` can change any of them at
runtime and every provider module reads the same values.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["EmulatorConfig", "generate_webhook_secret"]

_WEBHOOK_SECRET_PREFIX = "whsec_"


def generate_webhook_secret() -> str:
    """A fresh Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return _WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class EmulatorConfig(BaseModel):
    """Configuration of one emulator app; replaced as a whole on each runtime update."""

    # Unknown keys are mistakes (a misspelt knob in a PATCH would otherwise silently do nothing).
    model_config = ConfigDict(extra="forbid", frozen=True)

    public_url: str
    """Base URL the emulator is reachable at; used in output URLs and `urls.get`."""

    generation_seconds: float = Field(default=3.0, ge=0)
    """Wall-clock time from creation to a terminal state of a job."""

    generation_jitter_seconds: float = Field(default=0.0, ge=0)
    """Each job's generation time varies uniformly by up to this much either way."""

    # Faults. Later knobs (webhook drop/duplicate/delay/reorder rates, 429/5xx rates, output
    # expiry) belong here too so that one PATCH drives every provider.

    failure_rate: float = Field(default=0.0, ge=0, le=1)
    """Fraction of jobs that end `failed` instead of succeeding."""

    failure_message: str = (
        "The input or output was flagged as sensitive. Please try again with different inputs."
        " (E005)"
    )
    """The `error` of a job failed by `failure_rate` (Replicate's content-filter message)."""

    # Replicate.

    replicate_token: str = Field(default="r8_emulator", min_length=1)
    """The only bearer token the Replicate API accepts."""

    replicate_webhook_secret: str = Field(default_factory=generate_webhook_secret)
    """Standard Webhooks secret (`whsec_<base64>`); None or unset means a freshly generated one."""

    # Webhook delivery, shared by every provider.

    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    """Timeout of one webhook delivery attempt."""

    webhook_retries: int = Field(default=3, ge=0)
    """Extra attempts for a final (`completed`) webhook answered by an error or not at all."""

    webhook_retry_backoff_seconds: float = Field(default=0.5, ge=0)
    """Delay before the first retry of a final webhook; doubles on each further retry."""

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("replicate_webhook_secret", mode="before")
    @classmethod
    def _secret(cls, value: object) -> object:
        """Generate a secret for None; insist on `whsec_` + base64 so signing cannot fail later."""
        if value is None:
            return generate_webhook_secret()
        if not isinstance(value, str) or not value.startswith(_WEBHOOK_SECRET_PREFIX):
            raise ValueError("must be a string starting with 'whsec_'")
        try:
            key = base64.b64decode(value.removeprefix(_WEBHOOK_SECRET_PREFIX), validate=True)
        except binascii.Error as error:
            raise ValueError("must be 'whsec_' followed by base64") from error
        if not key:
            raise ValueError("must not be empty")
        return value
