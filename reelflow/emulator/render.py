"""Render the emulator's "generated" videos: small but real MP4s of prompt-seeded moving colour.

Clients download, probe, concatenate and thumbnail these files exactly as they would a provider's
output, so they are real H.264 in yuv420p, with the requested duration, frame rate and aspect.
"""

from __future__ import annotations

import colorsys
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av

__all__ = ["VIDEO_CODEC", "VideoSpec", "frame_size", "render_mp4"]

# Some PyAV wheels are built without GPL encoders; mpeg4 is always there and every player opens it.
VIDEO_CODEC: Literal["libx264", "mpeg4"] = (
    "libx264" if "libx264" in av.codecs_available else "mpeg4"
)

# Period of the luma triangle wave 0..255..0.
_RAMP_PERIOD = 510
# The rendered clips are small: their long side has this many pixels.
_LONG_SIDE = 160


@dataclass(frozen=True)
class VideoSpec:
    """What a generated video looks like."""

    prompt: str
    """Seeds the picture."""

    seconds: float
    """Duration."""

    aspect_ratio: str = "16:9"
    """`W:H`."""

    fps: int = 24
    """Frame rate."""

    seed: int | None = None
    """Also seeds the picture; None: a random seed."""


def frame_size(aspect_ratio: str) -> tuple[int, int]:
    """Even width and height of a small frame with this `W:H` aspect ratio (e.g. `16:9`)."""
    ratio_w, ratio_h = (int(part) for part in aspect_ratio.split(":"))
    short = max(2, round(_LONG_SIDE * min(ratio_w, ratio_h) / max(ratio_w, ratio_h) / 2) * 2)
    return (_LONG_SIDE, short) if ratio_w >= ratio_h else (short, _LONG_SIDE)


def render_mp4(
    path: Path,
    *,
    prompt: str,
    seconds: float,
    width: int = 160,
    height: int = 96,
    fps: int = 12,
    seed: int | None = None,
) -> None:
    """Write an MP4 (moov atom first, so it streams) of `round(seconds * fps)` frames to `path`.

    The picture is a diagonal luma gradient that slides every frame over a colour whose hue comes
    from a hash of the prompt and seed and drifts across the clip, so different prompts give
    visibly different videos and the same prompt and seed give the same one.

    Args:
        path: Destination file; its directory must exist.
        prompt: Seeds the colour.
        seconds: Duration of the video.
        width: Frame width in pixels; even, as yuv420p needs.
        height: Frame height in pixels; even.
        fps: Frame rate.
        seed: Also seeds the colour; None behaves like 0.

    Raises:
        ValueError: A dimension is odd or not positive, `fps` is not positive or `seconds` is
            too short for one frame.
    """
    frames = round(seconds * fps)
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even, got {width}x{height}")
    if fps <= 0 or frames <= 0:
        raise ValueError(f"{seconds} s at {fps} fps is not a video")

    # Every luma row is a slice of one precomputed wave: slicing bytes is what keeps a 5 s clip
    # in milliseconds without numpy. Rows are `line_size` long, padding included.
    line_size = av.VideoFrame(width, height, "yuv420p").planes[0].line_size
    ramp = bytes(255 - abs(255 - i % _RAMP_PERIOD) for i in range(_RAMP_PERIOD + line_size))
    digest = hashlib.sha256(f"{prompt}\x00{seed or 0}".encode()).digest()
    base_hue = digest[0] / 256
    phase = digest[1]

    # "+faststart" makes FFmpeg reopen the file by name to move the index to the front, which is
    # why this writes to a path rather than to a BytesIO.
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(VIDEO_CODEC, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        if VIDEO_CODEC == "libx264":
            stream.options = {"preset": "ultrafast"}
        for index in range(frames):
            frame = _frame(
                ramp,
                width=width,
                height=height,
                shift=phase + 6 * index,
                hue=base_hue + 0.5 * index / frames,
            )
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _frame(ramp: bytes, *, width: int, height: int, shift: int, hue: float) -> av.VideoFrame:
    """One yuv420p frame: luma rows sliced from `ramp` at `shift`, chroma from `hue` (BT.601)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    luma, cb, cr = frame.planes
    starts = ((shift + row) % _RAMP_PERIOD for row in range(height))
    luma.update(b"".join(ramp[start : start + luma.line_size] for start in starts))
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, 0.75, 0.9)
    u = round(128 + 255 * (-0.168736 * red - 0.331264 * green + 0.5 * blue))
    v = round(128 + 255 * (0.5 * red - 0.418688 * green - 0.081312 * blue))
    cb.update(bytes([u]) * (cb.line_size * (height // 2)))
    cr.update(bytes([v]) * (cr.line_size * (height // 2)))
    return frame
