"""The models reelflow can run: provider, capabilities, input schema, limits and price.

A model's input schema is a pydantic model of reelflow's own parameter names (`prompt`,
`durationSeconds`, …); `to_provider_input` maps a validated instance onto the provider's names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Capability", "MODELS", "ModelSpec", "get_model"]

Capability = Literal["webhook", "polling"]


class _GenerateParams(BaseModel):
    """Parameters every `pipeline:generate` job accepts, whatever the model."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    modelId: str
    prompt: str = Field(min_length=1, max_length=4000)
    negativePrompt: str | None = Field(default=None, max_length=4000)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    waitingStrategy: Literal["webhook", "polling"] | None = None


class SeedanceParams(_GenerateParams):
    """ByteDance Seedance 1 (pro and lite) on Replicate."""

    imageUrl: str | None = Field(default=None, pattern=r"^https?://")
    durationSeconds: int = Field(default=5, ge=2, le=12)
    aspectRatio: Literal["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21"] = "16:9"
    resolution: Literal["480p", "720p", "1080p"] = "1080p"


def _seedance_input(params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, SeedanceParams)
    inputs: dict[str, Any] = {
        "prompt": params.prompt,
        "duration": params.durationSeconds,
        "resolution": params.resolution,
    }
    # Seedance takes its aspect ratio from the image when one is given.
    if params.imageUrl:
        inputs["image"] = params.imageUrl
    else:
        inputs["aspect_ratio"] = params.aspectRatio
    if params.seed is not None:
        inputs["seed"] = params.seed
    return inputs


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry."""

    id: str
    """reelflow's id, used as `modelId` in plans."""
    provider: str
    """Provider name, the key of the provider adapter."""
    provider_model_path: str
    """The provider's own path for the model."""
    capabilities: frozenset[Capability]
    """How completion can be awaited."""
    params_model: type[BaseModel]
    """Schema of the job's params."""
    to_provider_input: Callable[[BaseModel], dict[str, Any]]
    """Maps validated params to the provider's input body."""
    expected_seconds: int
    """Typical generation time, for display and polling hints."""
    deadline_seconds: int
    """After this, the job is cancelled at the provider and fails."""
    price_usd: float
    """Price per `price_unit`."""
    price_unit: Literal["second", "clip"]
    """What `price_usd` is charged for."""
    output_type: Literal["video", "image"] = "video"
    """What the model produces."""

    def describe(self) -> dict[str, Any]:
        """The model as `GET /api/models` shows it."""
        return {
            "id": self.id,
            "provider": self.provider,
            "providerModelPath": self.provider_model_path,
            "capabilities": sorted(self.capabilities),
            "outputType": self.output_type,
            "expectedSeconds": self.expected_seconds,
            "deadlineSeconds": self.deadline_seconds,
            "price": {"usd": self.price_usd, "per": self.price_unit},
            "paramsSchema": self.params_model.model_json_schema(),
        }


_WEBHOOK_AND_POLLING: frozenset[Capability] = frozenset({"webhook", "polling"})

MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="bytedance/seedance-1-pro",
            provider="replicate",
            provider_model_path="bytedance/seedance-1-pro",
            capabilities=_WEBHOOK_AND_POLLING,
            params_model=SeedanceParams,
            to_provider_input=_seedance_input,
            expected_seconds=90,
            deadline_seconds=30 * 60,
            price_usd=0.15,
            price_unit="second",
        ),
        ModelSpec(
            id="bytedance/seedance-1-lite",
            provider="replicate",
            provider_model_path="bytedance/seedance-1-lite",
            capabilities=_WEBHOOK_AND_POLLING,
            params_model=SeedanceParams,
            to_provider_input=_seedance_input,
            expected_seconds=45,
            deadline_seconds=30 * 60,
            price_usd=0.036,
            price_unit="second",
        ),
    )
}


def get_model(model_id: str) -> ModelSpec | None:
    """The registry entry for `model_id`, or None."""
    return MODELS.get(model_id)
