"""Real MP4 files of a chosen size, for the outputs the emulator's small clips cannot stand in for.

reelflow probes every video it re-hosts, so a payload must be a playable MP4: frames of random
noise, which no encoder can shrink, encoded until the file reaches the requested size. Files are
cached under the system temp directory by size, so later runs skip the encoding.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import av

from reelflow.emulator.render import VIDEO_CODEC

__all__ = ["PAYLOAD_DIR", "ensure_payload", "payload_name"]

PAYLOAD_DIR = Path(tempfile.gettempdir()) / "reelflow-bench-payloads"
"""Where payloads are cached."""

_FPS = 24
# Lossless noise takes about 1.6 bytes a pixel: big frames for big files, small ones for the
# rest, so every file ends within one frame (~2 MB, ~130 KB) of its requested size.
_BIG_FRAME = (1280, 720)
_SMALL_FRAME = (320, 180)
_BIG_FILE = 50_000_000


def payload_name(size_bytes: int) -> str:
    """The payload's name (also the first path segment the file server maps to it)."""
    return f"p{size_bytes // 1_000_000}mb"


def ensure_payload(size_bytes: int) -> Path:
    """An MP4 of at least `size_bytes` (and at most about one frame more), made if missing."""
    PAYLOAD_DIR.mkdir(parents=True, exist_ok=True)
    path = PAYLOAD_DIR / f"{payload_name(size_bytes)}.mp4"
    if path.is_file() and path.stat().st_size >= size_bytes:
        return path
    partial = path.with_suffix(".partial.mp4")
    _encode_noise(partial, size_bytes)
    os.replace(partial, path)
    return path


def _encode_noise(path: Path, size_bytes: int) -> None:
    width, height = _BIG_FRAME if size_bytes >= _BIG_FILE else _SMALL_FRAME
    # "+faststart" puts the index first, as providers' downloadable MP4s have it.
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(VIDEO_CODEC, rate=_FPS)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        # A bit rate far above what noise needs: each frame stays about its raw size.
        stream.bit_rate = 2_000_000_000
        if VIDEO_CODEC == "libx264":
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", "qp": "0"}
        written = 0
        index = 0
        plane_bytes = width * height * 3 // 2
        while written < size_bytes:
            frame = av.VideoFrame(width, height, "yuv420p")
            noise = os.urandom(plane_bytes)
            luma, cb, cr = frame.planes
            luma_size = luma.line_size * height
            chroma_size = cb.line_size * (height // 2)
            luma.update(noise[:luma_size].ljust(luma_size, b"\0"))
            cb.update(noise[luma_size : luma_size + chroma_size].ljust(chroma_size, b"\0"))
            cr.update(noise[-chroma_size:])
            frame.pts = index
            index += 1
            for packet in stream.encode(frame):
                written += packet.size
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
