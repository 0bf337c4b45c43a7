"""Media inspection with PyAV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

__all__ = ["MediaInfo", "probe"]


@dataclass(frozen=True)
class MediaInfo:
    """What a media file contains."""

    duration_s: float
    """Duration of the container, in seconds."""
    video_streams: int
    """Number of video streams."""
    width: int | None
    """Frame width of the first video stream."""
    height: int | None
    """Frame height of the first video stream."""
    fps: float | None
    """Average frame rate of the first video stream."""


def probe(source: Path | str) -> MediaInfo:
    """Open a file or URL and describe it.

    Raises:
        av.error.FFmpegError: the source is not a readable media file.
    """
    with av.open(str(source)) as container:
        videos = list(container.streams.video)
        duration = (container.duration or 0) / av.time_base
        first = videos[0] if videos else None
        return MediaInfo(
            duration_s=duration,
            video_streams=len(videos),
            width=first.codec_context.width if first else None,
            height=first.codec_context.height if first else None,
            fps=float(first.average_rate) if first and first.average_rate else None,
        )
