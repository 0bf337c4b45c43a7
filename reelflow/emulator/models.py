"""The emulated video models: input schemas (the subset of JSON Schema they use) and output.

Each provider module validates inputs against these and reports problems in its provider's own
error vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reelflow.emulator.render import VideoSpec

__all__ = ["InputField", "VideoModel", "json_type"]


@dataclass(frozen=True)
class InputField:
    """One property of a model's input schema."""

    kind: Literal["string", "integer", "number", "boolean", "uri"]
    """JSON type; `uri` is a string in the `uri` format."""

    required: bool = False
    """Whether the input must have it."""

    choices: tuple[str | int, ...] = ()
    """Allowed values (an `enum`), if restricted."""

    minimum: float | None = None
    """Smallest allowed number."""

    maximum: float | None = None
    """Largest allowed number."""


@dataclass(frozen=True)
class VideoModel:
    """A video model whose input names are `prompt`, `duration`, `aspect_ratio` and `seed`."""

    name: str
    """The provider's id of the model."""

    inputs: Mapping[str, InputField]
    """Input schema; properties not listed are accepted and ignored, as the providers do."""

    default_seconds: float
    """Video length when the input has no `duration`."""

    fps: int
    """Frame rate of the model's videos."""

    def video_spec(self, inputs: Mapping[str, Any]) -> VideoSpec:
        """The video a validated input asks for (`duration` may be a number or a string)."""
        seed = inputs.get("seed")
        return VideoSpec(
            prompt=str(inputs.get("prompt", "")),
            seconds=float(inputs.get("duration", self.default_seconds)),
            aspect_ratio=str(inputs.get("aspect_ratio", "16:9")),
            fps=self.fps,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        )


def json_type(value: object) -> str:
    """The JSON Schema type name of a decoded JSON value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        # JSON Schema counts 5.0 as an integer.
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
