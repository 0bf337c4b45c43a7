"""The emulator's knobs: where it is reachable, how each provider behaves, and its credentials.

Every knob lives on `EmulatorConfig` so that `PATCH /_emulator/config` can change any of them at
runtime. Job timing and fault injection are set per provider, in one `ProviderBehaviour` section
each (`replicate`, `fal`, `veo`); `EmulatorConfig.merged` applies a partial, nested change, and the
key `all` sets knobs of every section at once.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "PROVIDERS",
    "EmulatorConfig",
    "FalBehaviour",
    "Provider",
    "ProviderBehaviour",
    "ReplicateBehaviour",
    "VeoBehaviour",
    "generate_ed25519_seed",
    "generate_webhook_secret",
]

Provider = Literal["replicate", "fal", "veo"]
"""The emulated providers; each names a config section and a stats section."""

PROVIDERS: tuple[Provider, ...] = get_args(Provider)

_WEBHOOK_SECRET_PREFIX = "whsec_"
_ED25519_SEED_BYTES = 32

Rate = Annotated[float, Field(ge=0, le=1)]
"""A probability: 0 never, 1 always."""


def generate_webhook_secret() -> str:
    """A fresh Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return _WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def generate_ed25519_seed() -> str:
    """A fresh Ed25519 private key, as the hex of its 32-byte seed."""
    return secrets.token_bytes(_ED25519_SEED_BYTES).hex()


class ProviderBehaviour(BaseModel):
    """How one provider's jobs run and which faults its API and webhooks show.

    Running jobs read the knobs as they go — the timing when they start, the outcome when they
    end, the webhook faults at each delivery, the expiry at each download — so a change applies
    to jobs already running.
    """

    # Unknown keys are mistakes (a misspelt knob in a PATCH would otherwise silently do nothing).
    model_config = ConfigDict(extra="forbid", frozen=True)

    generation_seconds: float = Field(default=3.0, ge=0)
    """Wall-clock time from creation to a terminal state of a job."""

    generation_jitter_seconds: float = Field(default=0.0, ge=0)
    """Each job's generation time varies uniformly by up to this much either way."""

    failure_rate: Rate = 0.0
    """Fraction of jobs that fail instead of succeeding."""

    failure_message: str = "The job failed."
    """The error of a job failed by `failure_rate`, worded as the provider words it."""

    webhook_drop_rate: Rate = 0.0
    """Fraction of webhook deliveries never sent (for a retried webhook: every attempt lost)."""

    webhook_duplicate_rate: Rate = 0.0
    """Fraction of webhook deliveries sent twice: the same signed request, same id."""

    webhook_delay_seconds: float = Field(default=0.0, ge=0)
    """Each delivery waits a uniformly random 0..this many seconds (order per job is kept)."""

    webhook_reorder_rate: Rate = 0.0
    """Fraction of non-final deliveries held back until the job's next delivery has gone."""

    create_429_rate: Rate = 0.0
    """Fraction of job creations answered 429 (nothing is created)."""

    create_5xx_rate: Rate = 0.0
    """Fraction of job creations answered with a transient 5xx (nothing is created)."""

    create_response_delay_seconds: float = Field(default=0.0, ge=0)
    """Each job creation's response is held back this long after the job was created.

    The job is created, counted, started (and, at a real provider, billed) at once; only the
    answer carrying its id is late, as if held up on the way back. A test can so kill or time
    out the caller after the provider has the job but before the caller learns its id: the
    orphan a crash inside a start activity leaves behind (Replicate's `find_existing` finds it).
    """

    status_429_rate: Rate = 0.0
    """Fraction of status, result and list reads answered 429."""

    status_5xx_rate: Rate = 0.0
    """Fraction of status, result and list reads answered with a transient 5xx."""

    rate_limit_reset_seconds: int = Field(default=1, ge=0)
    """The wait a 429 tells the client about, in the provider's own way (e.g. `Retry-After`)."""

    output_expiry_seconds: float | None = Field(default=None, gt=0)
    """After this long past a job's end its output files are gone; None keeps them."""


class ReplicateBehaviour(ProviderBehaviour):
    """Replicate's section: failures carry Replicate's content-filter error."""

    failure_message: str = (
        "The input or output was flagged as sensitive. Please try again with different inputs."
        " (E005)"
    )


class FalBehaviour(ProviderBehaviour):
    """fal's section: failures are content-policy rejections (`422`, `content_policy_violation`)."""

    failure_message: str = "The content was flagged by a content checker."


class VeoBehaviour(ProviderBehaviour):
    """Veo's section: failures are failed operations; safety filtering is a separate outcome."""

    failure_message: str = (
        "Video generation failed due to an internal server issue. Please try again in a few"
        " minutes. If the problem persists, please contact Gemini API support."
    )

    safety_filter_rate: Rate = 0.0
    """Fraction of operations that succeed with every video removed by the safety filters."""

    safety_filter_reason: str = (
        "Unable to generate videos because they may violate our usage guidelines. You have not"
        " been charged for this request. Support codes: 58061214"
    )
    """The `raiMediaFilteredReasons` entry of a filtered operation."""


class EmulatorConfig(BaseModel):
    """Configuration of one emulator app; replaced as a whole on each runtime update."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_url: str
    """Base URL the emulator is reachable at; used in every URL it hands out."""

    replicate: ReplicateBehaviour = ReplicateBehaviour()
    """Replicate's timing and faults."""

    fal: FalBehaviour = FalBehaviour()
    """fal's timing and faults."""

    veo: VeoBehaviour = VeoBehaviour()
    """Veo's (the Gemini API's) timing and faults."""

    # Credentials.

    replicate_token: str = Field(default="r8_emulator", min_length=1)
    """The only bearer token the Replicate API accepts."""

    replicate_webhook_secret: str = Field(default_factory=generate_webhook_secret)
    """Standard Webhooks secret (`whsec_<base64>`); None or unset means a freshly generated one."""

    fal_key: str = Field(default="emulator-key-id:emulator-key-secret", min_length=1)
    """The only key fal's queue accepts (`Authorization: Key <fal_key>`)."""

    fal_webhook_signing_key: str = Field(default_factory=generate_ed25519_seed)
    """Ed25519 private key (hex of the 32-byte seed) signing fal webhooks; None: a fresh one."""

    fal_user_id: str = Field(default="emulator-user", min_length=1)
    """The `X-Fal-Webhook-User-Id` of every fal webhook."""

    gemini_api_key: str = Field(default="emulator-gemini-key", min_length=1)
    """The only API key the Gemini API accepts (`x-goog-api-key` header or `key` parameter)."""

    # Webhook delivery, shared by every provider.

    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    """Timeout of one webhook delivery attempt."""

    webhook_retries: int = Field(default=3, ge=0)
    """Extra attempts for a final webhook answered by an error or not at all."""

    webhook_retry_backoff_seconds: float = Field(default=0.5, ge=0)
    """Delay before the first retry of a final webhook; doubles on each further retry."""

    @classmethod
    def uniform(cls, *, public_url: str, **knobs: Any) -> EmulatorConfig:
        """A config whose provider sections all share the same knobs.

        Args:
            public_url: Base URL the emulator is reachable at.
            **knobs: `ProviderBehaviour` knobs (e.g. `generation_seconds=1.5`), set in every
                section, and top-level fields (e.g. `replicate_token="r8_x"`).

        Raises:
            pydantic.ValidationError: a knob is unknown or has an invalid value.
        """
        common = {k: v for k, v in knobs.items() if k in ProviderBehaviour.model_fields}
        top = {k: v for k, v in knobs.items() if k not in common}
        return cls.model_validate({"public_url": public_url, **top, "all": common})

    def behaviour(self, provider: Provider) -> ProviderBehaviour:
        """The section of `provider`."""
        section: ProviderBehaviour = getattr(self, provider)
        return section

    def merged(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """This config with a partial change applied, as `PATCH /_emulator/config` does.

        Top-level keys replace their values; a provider section given as an object changes only
        the knobs it names; `all` sets knobs in every section, below the sections' own changes.

        Raises:
            ValueError: the result is not a valid config (`pydantic.ValidationError` for most
                problems).
        """
        current = self.model_dump()
        return self.model_validate({**current, **_spread_all(changes, base=current)})

    @model_validator(mode="before")
    @classmethod
    def _all(cls, data: object) -> object:
        """Accept `all` in the input: its knobs go into every section, below the section's own."""
        if isinstance(data, Mapping) and "all" in data:
            return _spread_all(data, base={})
        return data

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

    @field_validator("fal_webhook_signing_key", mode="before")
    @classmethod
    def _signing_key(cls, value: object) -> object:
        """Generate a key for None; insist on 32 bytes of hex so signing cannot fail later."""
        if value is None:
            return generate_ed25519_seed()
        if not isinstance(value, str):
            raise ValueError("must be a string of 64 hex digits")
        try:
            seed = bytes.fromhex(value)
        except ValueError as error:
            raise ValueError("must be 64 hex digits") from error
        if len(seed) != _ED25519_SEED_BYTES:
            raise ValueError("must be 64 hex digits (a 32-byte Ed25519 seed)")
        return value.lower()


def _spread_all(data: Mapping[str, Any], *, base: Mapping[str, Any]) -> dict[str, Any]:
    """`data` without `all`, whose knobs are set in each provider section object.

    Each section becomes `base`'s section, overlaid with `all`, overlaid with `data`'s own
    section; sections given as something other than an object are left for validation to reject.
    """
    result = dict(data)
    common = result.pop("all", {})
    if not isinstance(common, Mapping):
        raise ValueError("'all' must be an object of provider knobs")
    for provider in PROVIDERS:
        section = result.get(provider, {})
        if isinstance(section, Mapping):
            result[provider] = {**base.get(provider, {}), **common, **section}
    return result
