"""The models reelflow can run: provider, capabilities, params schema, limits and price.

A model's params schema is a pydantic model in reelflow's own vocabulary (`prompt`,
`durationSeconds`, `aspectRatio`, `imageUrl`, …); its `to_provider_input` maps validated params
onto the provider's own input. Prices are list prices at the time of writing, for estimates only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Capability", "MODELS", "ModelSpec", "get_model"]

Capability = Literal["webhook", "polling"]
_HTTP_URL = r"^https?://"


class _GenerateParams(BaseModel):
    """Parameters every `pipeline:generate` job accepts, whatever the model."""

    model_config = ConfigDict(extra="forbid")

    modelId: str
    prompt: str = Field(min_length=1, max_length=4000)
    waitingStrategy: Literal["webhook", "polling"] | None = None


class SeedanceParams(_GenerateParams):
    """ByteDance Seedance 1 (pro and lite) on Replicate: text- or image-to-video."""

    imageUrl: str | None = Field(default=None, pattern=_HTTP_URL)
    durationSeconds: int = Field(default=5, ge=2, le=12)
    aspectRatio: Literal["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21"] = "16:9"
    resolution: Literal["480p", "720p", "1080p"] = "1080p"
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class KlingReplicateParams(_GenerateParams):
    """Kling 2.1 on Replicate animates a start image; a prompt alone is not enough."""

    imageUrl: str = Field(pattern=_HTTP_URL)
    durationSeconds: Literal[5, 10] = 5
    negativePrompt: str | None = Field(default=None, max_length=2500)


class MinimaxVideo01Params(_GenerateParams):
    """MiniMax video-01 (Hailuo) on Replicate: 6 s clips at 720p."""

    imageUrl: str | None = Field(default=None, pattern=_HTTP_URL)
    durationSeconds: Literal[6] = 6


class FalKlingParams(_GenerateParams):
    """Kling 2.1 master text-to-video on fal."""

    durationSeconds: Literal[5, 10] = 5
    aspectRatio: Literal["16:9", "9:16", "1:1"] = "16:9"
    negativePrompt: str | None = Field(default=None, max_length=2500)


class FalKlingImageParams(_GenerateParams):
    """Kling 2.1 standard image-to-video on fal: the clip starts from the image."""

    imageUrl: str = Field(pattern=_HTTP_URL)
    durationSeconds: Literal[5, 10] = 5
    negativePrompt: str | None = Field(default=None, max_length=2500)


class FalHailuoParams(_GenerateParams):
    """MiniMax Hailuo-02 standard text-to-video on fal (768p)."""

    durationSeconds: Literal[6, 10] = 6


class Veo3Params(_GenerateParams):
    """Veo 3 and Veo 3 fast on the Gemini API."""

    imageUrl: str | None = Field(default=None, pattern=_HTTP_URL)
    durationSeconds: Literal[4, 6, 8] = 8
    aspectRatio: Literal["16:9", "9:16"] = "16:9"
    resolution: Literal["720p", "1080p"] = "720p"
    negativePrompt: str | None = Field(default=None, max_length=2500)


class Veo2Params(_GenerateParams):
    """Veo 2 on the Gemini API."""

    imageUrl: str | None = Field(default=None, pattern=_HTTP_URL)
    durationSeconds: Literal[5, 6, 7, 8] = 8
    aspectRatio: Literal["16:9", "9:16"] = "16:9"
    negativePrompt: str | None = Field(default=None, max_length=2500)


def _seedance(params: BaseModel) -> dict[str, Any]:
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


def _kling_replicate(params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, KlingReplicateParams)
    inputs: dict[str, Any] = {
        "prompt": params.prompt,
        "start_image": params.imageUrl,
        "duration": params.durationSeconds,
        "mode": "standard",
    }
    if params.negativePrompt:
        inputs["negative_prompt"] = params.negativePrompt
    return inputs


def _minimax_video_01(params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, MinimaxVideo01Params)
    inputs: dict[str, Any] = {"prompt": params.prompt, "prompt_optimizer": True}
    if params.imageUrl:
        inputs["first_frame_image"] = params.imageUrl
    return inputs


def _fal_kling(params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, FalKlingParams)
    # fal's Kling endpoints take the duration as a string enum.
    inputs: dict[str, Any] = {
        "prompt": params.prompt,
        "duration": str(params.durationSeconds),
        "aspect_ratio": params.aspectRatio,
    }
    if params.negativePrompt:
        inputs["negative_prompt"] = params.negativePrompt
    return inputs


def _fal_kling_image(params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, FalKlingImageParams)
    inputs: dict[str, Any] = {
        "prompt": params.prompt,
        "image_url": params.imageUrl,
        "duration": str(params.durationSeconds),
    }
    if params.negativePrompt:
        inputs["negative_prompt"] = params.negativePrompt
    return inputs


def _fal_hailuo(params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, FalHailuoParams)
    return {
        "prompt": params.prompt,
        "duration": str(params.durationSeconds),
        "prompt_optimizer": True,
    }


def _veo(params: BaseModel) -> dict[str, Any]:
    assert isinstance(params, Veo3Params | Veo2Params)
    # The Veo adapter takes Gemini's own names, flat: `prompt` and `image` make the instance,
    # the rest become `parameters`.
    inputs: dict[str, Any] = {
        "prompt": params.prompt,
        "aspectRatio": params.aspectRatio,
        "durationSeconds": params.durationSeconds,
    }
    if params.imageUrl:
        inputs["image"] = params.imageUrl
    if isinstance(params, Veo3Params):
        inputs["resolution"] = params.resolution
    if params.negativePrompt:
        inputs["negativePrompt"] = params.negativePrompt
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
    params_model: type[_GenerateParams]
    """Schema of the job's params."""
    to_provider_input: Callable[[BaseModel], dict[str, Any]]
    """Maps validated params to the provider's input body."""
    expected_seconds: int
    """Typical generation time, for display."""
    deadline_seconds: int
    """After this, the job is cancelled at the provider and fails."""
    price_usd: Decimal
    """List price per `price_unit`."""
    price_unit: Literal["second", "clip"]
    """What `price_usd` is charged for: a second of output video, or a clip."""
    reports_compute_time: bool = True
    """False when the provider reports no compute time; the clip length stands in for it."""
    output_type: Literal["video", "image"] = "video"
    """What the model produces."""

    def clip_seconds(self, params: dict[str, Any]) -> float:
        """Length of the clip these params ask for."""
        duration = params.get("durationSeconds")
        if duration is None:
            duration = self.params_model.model_fields["durationSeconds"].default
        return float(duration)

    def estimate_cost(self, params: dict[str, Any]) -> Decimal:
        """Estimated price of one job with these params, in US dollars."""
        if self.price_unit == "clip":
            return self.price_usd
        return (self.price_usd * Decimal(str(self.clip_seconds(params)))).quantize(
            Decimal("0.0001")
        )

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
            "price": {"usd": float(self.price_usd), "per": self.price_unit},
            "paramsSchema": self.params_model.model_json_schema(),
        }


_BOTH: frozenset[Capability] = frozenset({"webhook", "polling"})
_POLLING: frozenset[Capability] = frozenset({"polling"})
_HALF_HOUR = 30 * 60

MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="bytedance/seedance-1-pro",
            provider="replicate",
            provider_model_path="bytedance/seedance-1-pro",
            capabilities=_BOTH,
            params_model=SeedanceParams,
            to_provider_input=_seedance,
            expected_seconds=90,
            deadline_seconds=_HALF_HOUR,
            price_usd=Decimal("0.15"),
            price_unit="second",
        ),
        ModelSpec(
            id="bytedance/seedance-1-lite",
            provider="replicate",
            provider_model_path="bytedance/seedance-1-lite",
            capabilities=_BOTH,
            params_model=SeedanceParams,
            to_provider_input=_seedance,
            expected_seconds=45,
            deadline_seconds=_HALF_HOUR,
            price_usd=Decimal("0.072"),
            price_unit="second",
        ),
        ModelSpec(
            id="kwaivgi/kling-v2.1",
            provider="replicate",
            provider_model_path="kwaivgi/kling-v2.1",
            capabilities=_BOTH,
            params_model=KlingReplicateParams,
            to_provider_input=_kling_replicate,
            expected_seconds=240,
            deadline_seconds=_HALF_HOUR,
            price_usd=Decimal("0.05"),
            price_unit="second",
        ),
        ModelSpec(
            id="minimax/video-01",
            provider="replicate",
            provider_model_path="minimax/video-01",
            capabilities=_BOTH,
            params_model=MinimaxVideo01Params,
            to_provider_input=_minimax_video_01,
            expected_seconds=180,
            deadline_seconds=_HALF_HOUR,
            price_usd=Decimal("0.50"),
            price_unit="clip",
        ),
        # fal has no Kling 2.1 *standard* text-to-video (standard is image-to-video only); the
        # text-to-video endpoint of Kling 2.1 is the master tier.
        ModelSpec(
            id="fal-ai/kling-video/v2.1/master/text-to-video",
            provider="fal",
            provider_model_path="fal-ai/kling-video/v2.1/master/text-to-video",
            capabilities=_BOTH,
            params_model=FalKlingParams,
            to_provider_input=_fal_kling,
            expected_seconds=300,
            deadline_seconds=_HALF_HOUR,
            price_usd=Decimal("0.28"),
            price_unit="second",
        ),
        ModelSpec(
            id="fal-ai/kling-video/v2.1/standard/image-to-video",
            provider="fal",
            provider_model_path="fal-ai/kling-video/v2.1/standard/image-to-video",
            capabilities=_BOTH,
            params_model=FalKlingImageParams,
            to_provider_input=_fal_kling_image,
            expected_seconds=180,
            deadline_seconds=_HALF_HOUR,
            price_usd=Decimal("0.05"),
            price_unit="second",
        ),
        ModelSpec(
            id="fal-ai/minimax/hailuo-02/standard/text-to-video",
            provider="fal",
            provider_model_path="fal-ai/minimax/hailuo-02/standard/text-to-video",
            capabilities=_BOTH,
            params_model=FalHailuoParams,
            to_provider_input=_fal_hailuo,
            expected_seconds=240,
            deadline_seconds=_HALF_HOUR,
            price_usd=Decimal("0.045"),
            price_unit="second",
        ),
        ModelSpec(
            id="veo-3.0-generate-001",
            provider="veo",
            provider_model_path="veo-3.0-generate-001",
            capabilities=_POLLING,
            params_model=Veo3Params,
            to_provider_input=_veo,
            expected_seconds=120,
            deadline_seconds=20 * 60,
            price_usd=Decimal("0.40"),
            price_unit="second",
            reports_compute_time=False,
        ),
        ModelSpec(
            id="veo-3.0-fast-generate-001",
            provider="veo",
            provider_model_path="veo-3.0-fast-generate-001",
            capabilities=_POLLING,
            params_model=Veo3Params,
            to_provider_input=_veo,
            expected_seconds=60,
            deadline_seconds=20 * 60,
            price_usd=Decimal("0.15"),
            price_unit="second",
            reports_compute_time=False,
        ),
        ModelSpec(
            id="veo-2.0-generate-001",
            provider="veo",
            provider_model_path="veo-2.0-generate-001",
            capabilities=_POLLING,
            params_model=Veo2Params,
            to_provider_input=_veo,
            expected_seconds=90,
            deadline_seconds=20 * 60,
            price_usd=Decimal("0.35"),
            price_unit="second",
            reports_compute_time=False,
        ),
    )
}


def get_model(model_id: str) -> ModelSpec | None:
    """The registry entry for `model_id`, or None."""
    return MODELS.get(model_id)
