"""Media inspection and editing with PyAV: `probe`, `concat` and `thumbnail` on local files.

Everything here is CPU-bound and blocking, works on local paths only (no network) and never holds
a whole video in memory: packets and frames go through one at a time. Activities call these
functions in a worker thread (`asyncio.to_thread`); workflow code must not import this module.

Errors: an input that cannot be used raises `MediaError`, whose message says what is wrong in
words a user can act on (never a PyAV traceback). A failure of the machine itself (a missing
file, a full disk) propagates as the `OSError` it is.

`concat` decides, per stream, between copying packets and re-encoding:

- Video is stream-copied (packets remuxed, timestamps rebased so each input starts where the
  previous one ends) when every input's video has the same codec, width, height, pixel format,
  sample aspect ratio, time base, frame rate and codec extradata (for H.264, the SPS/PPS), the MP4
  muxer accepts the codec, every input starts on a keyframe and the rebased decode timestamps stay
  increasing across the joins. Otherwise it is re-encoded to H.264 yuv420p.
- Re-encoded video has the first input's size (rounded down to even numbers, as yuv420p needs)
  and the highest frame rate among the inputs, so no input loses frames: slower inputs repeat
  frames, which costs almost nothing in H.264. Inputs of another shape are scaled to fit and
  letterboxed (black bars), never stretched or cropped.
- Audio is kept when any input has some: copied when every input has audio of one compatible
  format, else re-encoded to AAC with silence filling the inputs that have none (dropping a Veo
  clip's soundtrack because the Seedance clip next to it is silent would surprise a user).
- Each input's audio is timed from the start of its video and cut at the end of its video (to
  the audio packet when copied, to the sample when re-encoded, which also pads short audio with
  silence), so picture and sound stay in sync across the joins. The output lasts the sum of the
  inputs' video durations: exactly when copying video, within half an output frame per input
  when re-encoding it.
- Not handled: rotation metadata (phone videos) is ignored when re-encoding, and only the first
  video and audio streams of each input are used.

`thumbnail` returns the first frame at or after the requested time; past the end of the video
it returns the last frame rather than failing, since "a frame near the end" is what a caller
asking for second 5 of a clip that turned out 4.96 s long wants.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import av.error
from av.audio.fifo import AudioFifo
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer
from av.filter import Graph
from av.video.frame import PictureType
from av.video.stream import VideoStream

__all__ = ["MediaError", "MediaInfo", "Progress", "concat", "probe", "thumbnail"]

logger = logging.getLogger(__name__)

# Some PyAV builds lack GPL encoders; mpeg4 is always there and every player opens it.
_VIDEO_ENCODER: Literal["libx264", "mpeg4"] = (
    "libx264" if "libx264" in av.codecs_available else "mpeg4"
)
# Good quality at a speed that keeps a minute of 1080p well under a minute of CPU.
_X264_OPTIONS = {"preset": "veryfast", "crf": "20"}
_MPEG4_QUANTISERS = (2, 5)
_AUDIO_ENCODER: Literal["aac"] = "aac"
_AUDIO_FORMAT = "fltp"
_AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 8000})
# Samples per audio frame handed to the encoder (PyAV re-chunks them to AAC's 1024).
_AUDIO_CHUNK = 4096
# Frame rates outside this range are metadata noise (a 90 kHz "rate"), not a real cadence.
_MIN_FPS, _MAX_FPS, _DEFAULT_FPS = Fraction(1), Fraction(120), Fraction(30)
# JPEG quantiser, as `ffmpeg -q:v`: 2 is best, 31 worst; 3 is visually lossless for thumbnails.
_JPEG_QUALITY = 3
# Float seconds from a plan are compared with exact frame times with this tolerance.
_TIME_EPSILON = Fraction(1, 1_000_000)

_AudioMode = Literal["none", "copied", "re-encoded"]

Progress = Callable[[float], None]
"""Called with the seconds of output written so far; raising from it aborts the work."""


class MediaError(Exception):
    """An input cannot be used: not a video, no video stream, undecodable, or a bad parameter.

    Retrying will not help; the message says which input and why.
    """

    def __init__(self, message: str, *, input_index: int | None = None) -> None:
        """Create the error.

        Args:
            message: What is wrong, for a user.
            input_index: 0-based position of the offending input in `concat`'s list, if any.
        """
        super().__init__(message)
        self.input_index = input_index


@dataclass(frozen=True)
class MediaInfo:
    """What a media file contains."""

    duration_s: float
    """Duration of the container, in seconds (0 for a still image)."""
    video_streams: int
    """Number of video streams."""
    width: int | None
    """Frame width of the first video stream."""
    height: int | None
    """Frame height of the first video stream."""
    fps: float | None
    """Average frame rate of the first video stream (None for a still image)."""
    video_codec: str | None = None
    """Codec of the first video stream, e.g. `h264`, `mjpeg`, `png`."""
    pix_fmt: str | None = None
    """Pixel format of the first video stream, e.g. `yuv420p`."""
    frames: int | None = None
    """Frame count of the first video stream, when the container records it."""
    has_audio: bool = False
    """Whether there is an audio stream."""
    audio_codec: str | None = None
    """Codec of the first audio stream, e.g. `aac`."""


def probe(source: Path | str) -> MediaInfo:
    """Open a file (or any URL FFmpeg can read) and describe it.

    Raises:
        MediaError: the source is not a readable media file.
        OSError: the file is missing or unreadable.
    """
    with _open(source, None) as container:
        video = _video_stream(container)
        audio = container.streams.audio[0] if container.streams.audio else None
        return MediaInfo(
            duration_s=(container.duration or 0) / av.time_base,
            video_streams=len(container.streams.video),
            width=video.codec_context.width if video else None,
            height=video.codec_context.height if video else None,
            fps=float(video.average_rate) if video and video.average_rate else None,
            video_codec=video.codec_context.name if video else None,
            pix_fmt=video.codec_context.pix_fmt if video else None,
            frames=(video.frames or None) if video else None,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio else None,
        )


def concat(inputs: Sequence[Path], output: Path, *, progress: Progress | None = None) -> MediaInfo:
    """Join videos end to end into one MP4 (index first, so it streams).

    See the module docstring for when packets are copied and when and how they are re-encoded.

    Args:
        inputs: Videos, in order.
        output: The MP4 to write; its directory must exist.
        progress: Called from this thread with the seconds of output written so far.

    Returns:
        A description of the output.

    Raises:
        MediaError: no inputs, or an input is not a video that can be read.
        OSError: a file could not be read or written.
    """
    if not inputs:
        raise MediaError("concat needs at least one input video")
    sources = [_scan(Path(path), index) for index, path in enumerate(inputs)]

    copy_blocker = _video_copy_blocker(sources)
    audio_mode: _AudioMode = (
        "none"
        if not any(source.audio for source in sources)
        else "copied"
        if _audio_copyable(sources)
        else "re-encoded"
    )
    rate = max(_sane_rate(source.video.rate) for source in sources)
    if copy_blocker is None:
        durations = [source.duration for source in sources]
    else:
        # Each input becomes a whole number of output frames.
        durations = [Fraction(max(1, round(source.duration * rate))) / rate for source in sources]
    logger.info(
        "Concatenating %d inputs: video %s, audio %s",
        len(sources),
        "copied" if copy_blocker is None else f"re-encoded ({copy_blocker})",
        audio_mode,
    )

    try:
        _write_concat(
            sources,
            durations,
            output,
            copy_video=copy_blocker is None,
            rate=rate,
            audio_mode=audio_mode,
            progress=progress,
        )
    except BaseException:
        # Never leave half a video behind under the name of a finished one.
        output.unlink(missing_ok=True)
        raise
    return probe(output)


def _write_concat(
    sources: Sequence[_Source],
    durations: Sequence[Fraction],
    output: Path,
    *,
    copy_video: bool,
    rate: Fraction,
    audio_mode: _AudioMode,
    progress: Progress | None,
) -> None:
    try:
        with av.open(str(output), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            video: _VideoCopier | _VideoEncoder
            audio: _AudioCopier | _AudioEncoder | None = None
            if copy_video:
                video = _VideoCopier(out, sources[0])
            else:
                video = _VideoEncoder(out, sources[0], rate)
            if audio_mode == "copied":
                audio = _AudioCopier(out, sources[0])
            elif audio_mode == "re-encoded":
                audio = _AudioEncoder(out, next(s.audio for s in sources if s.audio))

            start = Fraction(0)
            for source, duration in zip(sources, durations, strict=True):
                with _open(source.path, source.index) as container:
                    video_stream = container.streams[source.video_index]
                    audio_stream = (
                        container.streams[source.audio_index]
                        if source.audio_index is not None
                        else None
                    )
                    assert isinstance(video_stream, VideoStream)
                    assert audio_stream is None or isinstance(audio_stream, AudioStream)
                    video.begin(source, video_stream, start=start, duration=duration)
                    if audio:
                        audio.begin(source, audio_stream, start=start, duration=duration)
                    streams = [s for s in (video_stream, audio_stream) if s is not None]
                    for packet in _demux(container, streams, source.index):
                        if packet.stream is video_stream:
                            video.feed(packet)
                            if progress:
                                progress(float(start + video.segment_seconds))
                        elif audio:
                            audio.feed(packet)
                    video.end()
                    if audio:
                        audio.end()
                start += duration
            video.finish()
            if audio:
                audio.finish()
    except av.error.FFmpegError as error:
        if isinstance(error, OSError):
            raise
        # Inputs were checked and decoding errors are handled above, so this is the encoder or
        # the muxer refusing what it was given.
        raise MediaError(f"writing the joined video failed: {_reason(error)}") from error


def thumbnail(
    input: Path, output: Path, *, at_seconds: float, format: Literal["jpeg", "png"]
) -> MediaInfo:
    """Save the frame at `at_seconds` (or the first one after it) as a JPEG or PNG image.

    The image has the video's frame size. Past the end of the video, the last frame is used.

    Args:
        input: The video.
        output: The image file to write; its directory must exist.
        at_seconds: Time of the frame from the start of the video; 0 is the first frame.
        format: `jpeg` or `png`.

    Returns:
        A description of the image (duration 0, one frame, no frame rate).

    Raises:
        MediaError: the input is not a readable video, or `at_seconds` or `format` is invalid.
        OSError: a file could not be read or written.
    """
    if format not in ("jpeg", "png"):
        raise MediaError(f"thumbnail format must be 'jpeg' or 'png', not {format!r}")
    if not math.isfinite(at_seconds) or at_seconds < 0:
        raise MediaError(f"thumbnail time must be a number of seconds >= 0, not {at_seconds!r}")
    frame = _frame_at(input, Fraction(at_seconds))
    codec, pix_fmt = ("mjpeg", "yuvj420p") if format == "jpeg" else ("png", "rgb24")
    try:
        packets = _encode_image(frame, codec, pix_fmt)
    except av.error.FFmpegError as error:
        if isinstance(error, OSError):
            raise
        raise MediaError(f"encoding the thumbnail failed: {_reason(error)}") from error
    with output.open("wb") as file:
        for packet in packets:
            file.write(bytes(packet))
    return MediaInfo(
        duration_s=0.0,
        video_streams=1,
        width=frame.width,
        height=frame.height,
        fps=None,
        video_codec=codec,
        pix_fmt=pix_fmt,
        frames=1,
    )


def _encode_image(frame: av.VideoFrame, codec: str, pix_fmt: str) -> list[av.Packet[Any]]:
    """One frame as a complete JPEG or PNG file (the encoder's only packet)."""
    encoder = av.CodecContext.create(codec, "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width = frame.width
    encoder.height = frame.height
    encoder.pix_fmt = pix_fmt
    encoder.time_base = Fraction(1, 25)
    if codec == "mjpeg":
        encoder.qmin = encoder.qmax = _JPEG_QUALITY
    # swscale maps limited-range video to the full range JPEG and PNG use.
    image = frame.reformat(format=pix_fmt)
    image.pts = 0
    image.pict_type = PictureType.NONE
    return [*encoder.encode(image), *encoder.encode(None)]


# Reading inputs.


@dataclass(frozen=True)
class _VideoFormat:
    """What must match for video packets of two inputs to share one stream."""

    codec: str
    width: int
    height: int
    pix_fmt: str | None
    sample_aspect_ratio: Fraction | None
    time_base: Fraction
    rate: Fraction | None
    extradata: bytes


@dataclass(frozen=True)
class _AudioFormat:
    """What must match for audio packets of two inputs to share one stream."""

    codec: str
    sample_rate: int
    layout: str
    sample_format: str
    time_base: Fraction
    extradata: bytes


@dataclass(frozen=True)
class _Source:
    """One concat input, scanned."""

    index: int
    path: Path
    video_index: int
    audio_index: int | None
    video: _VideoFormat
    audio: _AudioFormat | None
    start: int
    """Earliest video presentation timestamp, in the video time base."""
    end: int
    """Latest video presentation timestamp plus its packet's duration."""
    first_dts: int
    last_dts: int
    starts_on_keyframe: bool

    @property
    def duration(self) -> Fraction:
        """Length of the video, in seconds."""
        return (self.end - self.start) * self.video.time_base

    @property
    def start_seconds(self) -> Fraction:
        return self.start * self.video.time_base


def _label(index: int | None) -> str:
    return "the input" if index is None else f"input {index + 1}"


def _reason(error: av.error.FFmpegError) -> str:
    return str(error.strerror or error).rstrip(".")


def _open(path: Path | str, index: int | None) -> InputContainer:
    try:
        return av.open(str(path), "r")
    except av.error.FFmpegError as error:
        if isinstance(error, OSError):
            raise
        raise MediaError(
            f"{_label(index)} is not a video file that can be read ({_reason(error)})",
            input_index=index,
        ) from error


def _video_stream(container: InputContainer) -> VideoStream | None:
    """The first video stream that is a video, not an embedded cover picture."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _demux(
    container: InputContainer, streams: Sequence[av.stream.Stream], index: int | None
) -> Iterator[av.Packet[Any]]:
    """The streams' packets (then empty flush packets), with read errors as `MediaError`s."""
    packets = container.demux(streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as error:
            if isinstance(error, OSError):
                raise
            raise MediaError(
                f"{_label(index)} is damaged and cannot be read ({_reason(error)})",
                input_index=index,
            ) from error
        yield packet


def _decode(packet: av.Packet[Any], index: int | None) -> list[av.frame.Frame]:
    """Frames of a packet; a corrupt packet yields none, as in FFmpeg's own tools."""
    try:
        return list(packet.decode())
    except av.error.InvalidDataError as error:
        logger.warning("Skipping an undecodable packet of %s: %s", _label(index), _reason(error))
        return []


def _scan(path: Path, index: int) -> _Source:
    """Read every video packet's timestamps (not its pixels) and the streams' formats."""
    with _open(path, index) as container:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(f"{_label(index)} has no video stream", input_index=index)
        audio = next((s for s in container.streams.audio if s.codec_context.sample_rate > 0), None)
        context = stream.codec_context
        if stream.time_base is None or not context.width or not context.height:
            raise MediaError(
                f"{_label(index)} has a video stream without a frame size or time base",
                input_index=index,
            )
        start = end = first_dts = last_dts = None
        keyframe = False
        default_duration = _default_frame_duration(stream)
        for packet in _demux(container, [stream], index):
            if not packet.size:
                continue
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                continue
            dts = packet.dts if packet.dts is not None else pts
            if start is None:
                keyframe = packet.is_keyframe
                first_dts = dts
            start = pts if start is None else min(start, pts)
            stop = pts + (packet.duration or default_duration)
            end = stop if end is None else max(end, stop)
            last_dts = dts
        if start is None or end is None or first_dts is None or last_dts is None:
            raise MediaError(f"{_label(index)} has no video frames", input_index=index)
        return _Source(
            index=index,
            path=path,
            video_index=stream.index,
            audio_index=audio.index if audio else None,
            video=_VideoFormat(
                codec=context.name,
                width=context.width,
                height=context.height,
                pix_fmt=context.pix_fmt,
                sample_aspect_ratio=stream.sample_aspect_ratio or None,
                time_base=stream.time_base,
                rate=stream.guessed_rate or stream.average_rate or None,
                extradata=bytes(context.extradata or b""),
            ),
            audio=_AudioFormat(
                codec=audio.codec_context.name,
                sample_rate=audio.codec_context.sample_rate,
                layout=audio.codec_context.layout.name,
                sample_format=audio.codec_context.format.name,
                time_base=audio.time_base or Fraction(1, audio.codec_context.sample_rate),
                extradata=bytes(audio.codec_context.extradata or b""),
            )
            if audio
            else None,
            start=start,
            end=end,
            first_dts=first_dts,
            last_dts=last_dts,
            starts_on_keyframe=keyframe,
        )


def _default_frame_duration(stream: VideoStream) -> int:
    """One frame, in the stream's time base, for packets that do not say how long they last."""
    assert stream.time_base is not None
    return max(1, round(1 / (_sane_rate(stream.average_rate) * stream.time_base)))


def _sane_rate(rate: Fraction | None) -> Fraction:
    if rate is None or not _MIN_FPS <= rate <= _MAX_FPS:
        return _DEFAULT_FPS
    return rate.limit_denominator(1001)


@functools.cache
def _mp4_codecs() -> frozenset[str]:
    with av.open(io.BytesIO(), "w", format="mp4") as container:
        return frozenset(container.supported_codecs)


def _video_copy_blocker(sources: Sequence[_Source]) -> str | None:
    """Why the inputs' video packets cannot simply be joined, or None when they can."""
    first = sources[0].video
    if first.codec not in _mp4_codecs():
        return f"MP4 cannot hold {first.codec} video"
    for source in sources[1:]:
        video = source.video
        for name in ("codec", "width", "height", "pix_fmt", "sample_aspect_ratio"):
            if getattr(video, name) != getattr(first, name):
                return (
                    f"{_label(source.index)}'s {name} {getattr(video, name)} differs from "
                    f"input 1's {getattr(first, name)}"
                )
        if video.rate != first.rate:
            return f"{_label(source.index)}'s frame rate differs from input 1's"
        if video.time_base != first.time_base:
            return f"{_label(source.index)}'s time base differs from input 1's"
        if video.extradata != first.extradata:
            return f"{_label(source.index)}'s codec parameters differ from input 1's"
        if not source.starts_on_keyframe:
            return f"{_label(source.index)} does not start on a keyframe"
    # Decode timestamps must keep increasing across each join once rebased.
    offset = 0
    previous_last_dts: int | None = None
    for source in sources:
        first_dts = source.first_dts - source.start + offset
        if previous_last_dts is not None and first_dts <= previous_last_dts:
            return f"{_label(source.index)}'s frame reordering does not match the previous input's"
        previous_last_dts = source.last_dts - source.start + offset
        offset += source.end - source.start
    return None


def _audio_copyable(sources: Sequence[_Source]) -> bool:
    first = sources[0].audio
    return (
        first is not None
        and first.codec in _mp4_codecs()
        and all(source.audio == first for source in sources)
    )


# Writing the output: one object per output stream, fed one input ("segment") at a time.


class _VideoCopier:
    """Remuxes video packets, shifting each input's timestamps to follow the previous input."""

    def __init__(self, out: OutputContainer, first: _Source) -> None:
        self._out = out
        with _open(first.path, first.index) as container:
            template = container.streams[first.video_index]
            self._stream = out.add_stream_from_template(template)
        self._time_base = first.video.time_base
        self._offset = 0
        self._source = first
        self.segment_seconds = Fraction(0)

    def begin(
        self, source: _Source, stream: VideoStream, *, start: Fraction, duration: Fraction
    ) -> None:
        self._source = source
        self.segment_seconds = Fraction(0)

    def feed(self, packet: av.Packet[Any]) -> None:
        if not packet.size or (packet.pts is None and packet.dts is None):
            return
        shift = self._offset - self._source.start
        pts = packet.pts if packet.pts is not None else packet.dts
        dts = packet.dts if packet.dts is not None else packet.pts
        assert pts is not None and dts is not None
        packet.pts = pts + shift
        packet.dts = dts + shift
        packet.time_base = self._time_base
        packet.stream = self._stream
        self._out.mux(packet)
        self.segment_seconds = (pts - self._source.start) * self._time_base

    def end(self) -> None:
        self._offset += self._source.end - self._source.start
        self.segment_seconds = self._source.duration

    def finish(self) -> None:
        pass


class _VideoEncoder:
    """Decodes, fits into the output frame, retimes to the output rate and encodes to H.264."""

    def __init__(self, out: OutputContainer, first: _Source, rate: Fraction) -> None:
        self._out = out
        self._rate = rate
        self._width = first.video.width - first.video.width % 2
        self._height = first.video.height - first.video.height % 2
        self._sar = first.video.sample_aspect_ratio or Fraction(1)
        stream = out.add_stream(_VIDEO_ENCODER, rate=rate)
        stream.width = self._width
        stream.height = self._height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.sample_aspect_ratio = self._sar
        if _VIDEO_ENCODER == "libx264":
            stream.options = dict(_X264_OPTIONS)
        else:
            # mpeg4's default 200 kb/s would blur anything; bound the quantiser instead.
            stream.codec_context.qmin, stream.codec_context.qmax = _MPEG4_QUANTISERS
        self._stream = stream
        self._written = 0
        self._source: _Source | None = None
        self._slots = 0
        self._slot = 0
        self._held: av.VideoFrame | None = None
        self._graph: tuple[tuple[int, int, str, Fraction | None], Graph] | None = None
        self._last_time = Fraction(0)
        self.segment_seconds = Fraction(0)

    def begin(
        self, source: _Source, stream: VideoStream, *, start: Fraction, duration: Fraction
    ) -> None:
        stream.codec_context.thread_type = "AUTO"
        self._source = source
        self._slots = round(duration * self._rate)
        self._slot = 0
        self._held = None
        self._graph = None
        self._last_time = Fraction(0)
        self.segment_seconds = Fraction(0)

    def feed(self, packet: av.Packet[Any]) -> None:
        assert self._source is not None
        for frame in _decode(packet, self._source.index):
            assert isinstance(frame, av.VideoFrame)
            self._take(frame)

    def _take(self, frame: av.VideoFrame) -> None:
        assert self._source is not None
        tb = self._source.video.time_base
        if frame.pts is not None:
            time = (frame.pts - self._source.start) * tb
        else:
            time = self._last_time + 1 / _sane_rate(self._source.video.rate)
        self._last_time = time
        # Output slot k shows the latest input frame whose time is at or before k / rate.
        if self._held is not None:
            while self._slot < self._slots and self._slot / self._rate < time - _TIME_EPSILON:
                self._emit(self._held)
        self._held = self._fit(frame)

    def _fit(self, frame: av.VideoFrame) -> av.VideoFrame:
        """Scale `frame` to fit the output size keeping its shape, centred on black."""
        assert self._source is not None
        sar = self._source.video.sample_aspect_ratio
        key = (frame.width, frame.height, frame.format.name, sar)
        if self._graph is None or self._graph[0] != key:
            self._graph = (key, self._build_graph(frame, sar))
        graph = self._graph[1]
        graph.vpush(frame)
        fitted = graph.vpull()
        fitted.pict_type = PictureType.NONE
        return fitted

    def _build_graph(self, frame: av.VideoFrame, sar: Fraction | None) -> Graph:
        aspect = Fraction(frame.width, frame.height) * (sar or 1)
        full_height_width = self._height * aspect / self._sar
        if full_height_width <= self._width:
            width, height = _even(full_height_width), self._height
        else:
            width, height = self._width, _even(self._width * self._sar / aspect)
        width, height = min(max(width, 2), self._width), min(max(height, 2), self._height)
        x, y = _even((self._width - width) / 2), _even((self._height - height) / 2)
        assert self._source is not None
        graph = Graph()
        graph.link_nodes(
            graph.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format,
                time_base=self._source.video.time_base,
            ),
            graph.add("scale", f"{width}:{height}"),
            graph.add("format", "yuv420p"),
            graph.add("pad", f"{self._width}:{self._height}:{x}:{y}:black"),
            graph.add("setsar", f"{self._sar.numerator}/{self._sar.denominator}"),
            graph.add("buffersink"),
        ).configure()
        return graph

    def _emit(self, frame: av.VideoFrame) -> None:
        # The encoder keeps its own reference to the pixels, so the held frame can be sent
        # again with the next timestamp.
        frame.pts = self._written
        frame.time_base = self._stream.codec_context.time_base
        frame.duration = 1
        self._out.mux(self._stream.encode(frame))
        self._written += 1
        self._slot += 1
        self.segment_seconds = self._slot / self._rate

    def end(self) -> None:
        assert self._source is not None
        if self._held is None:
            raise MediaError(
                f"{_label(self._source.index)} has no video frame that can be decoded",
                input_index=self._source.index,
            )
        while self._slot < self._slots:
            self._emit(self._held)
        self._held = None
        self._graph = None

    def finish(self) -> None:
        self._out.mux(self._stream.encode(None))


class _AudioCopier:
    """Remuxes audio packets, cut to each input's video length and shifted like the video."""

    def __init__(self, out: OutputContainer, first: _Source) -> None:
        assert first.audio is not None and first.audio_index is not None
        self._out = out
        with _open(first.path, first.index) as container:
            self._stream = out.add_stream_from_template(container.streams[first.audio_index])
        self._time_base = first.audio.time_base
        self._shift = 0
        self._limit = 0
        self._last_dts: int | None = None

    def begin(
        self,
        source: _Source,
        stream: AudioStream | None,
        *,
        start: Fraction,
        duration: Fraction,
    ) -> None:
        # Audio timestamps are taken relative to the *video's* start, which keeps them in sync.
        origin = round(source.start_seconds / self._time_base)
        self._shift = round(start / self._time_base) - origin
        self._limit = origin + round(duration / self._time_base)

    def feed(self, packet: av.Packet[Any]) -> None:
        if not packet.size or packet.pts is None:
            return
        if packet.pts >= self._limit:
            return  # past this input's video
        dts = (packet.dts if packet.dts is not None else packet.pts) + self._shift
        if self._last_dts is not None and dts <= self._last_dts:
            return  # overlaps the previous input's tail
        packet.pts += self._shift
        packet.dts = dts
        packet.time_base = self._time_base
        packet.stream = self._stream
        self._out.mux(packet)
        self._last_dts = dts

    def end(self) -> None:
        pass

    def finish(self) -> None:
        pass


class _AudioEncoder:
    """Decodes and resamples each input's audio, pads or cuts it to the video, encodes AAC."""

    def __init__(self, out: OutputContainer, first: _AudioFormat) -> None:
        self._out = out
        self._rate = first.sample_rate if first.sample_rate in _AAC_RATES else 48000
        self._layout = "mono" if first.layout == "mono" else "stereo"
        stream = out.add_stream(_AUDIO_ENCODER, rate=self._rate)
        stream.layout = self._layout
        stream.format = _AUDIO_FORMAT
        stream.codec_context.time_base = Fraction(1, self._rate)
        self._stream = stream
        self._written = 0
        self._target = 0
        self._skip = 0
        self._lead_known = False
        self._video_start = Fraction(0)
        self._index = 0
        self._fifo = AudioFifo()
        self._resampler = self._new_resampler()

    def _new_resampler(self) -> AudioResampler:
        return AudioResampler(format=_AUDIO_FORMAT, layout=self._layout, rate=self._rate)

    def begin(
        self,
        source: _Source,
        stream: AudioStream | None,
        *,
        start: Fraction,
        duration: Fraction,
    ) -> None:
        if stream is not None:
            stream.codec_context.thread_type = "AUTO"
        # Targets are cumulative so rounding never drifts across many inputs.
        self._target = round((start + duration) * self._rate)
        self._skip = 0
        self._lead_known = False
        self._video_start = source.start_seconds
        self._index = source.index
        self._fifo = AudioFifo()
        self._resampler = self._new_resampler()

    def feed(self, packet: av.Packet[Any]) -> None:
        for frame in _decode(packet, self._index):
            assert isinstance(frame, av.AudioFrame)
            if not self._lead_known:
                self._lead_known = True
                if frame.pts is not None and frame.time_base is not None:
                    lead = round((frame.pts * frame.time_base - self._video_start) * self._rate)
                    if lead > 0:
                        self._silence(lead)
                    else:
                        self._skip = -lead
            self._queue(self._resampler.resample(frame))

    def _queue(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            frame.pts = None  # the FIFO checks continuity of timestamps we no longer need
            self._fifo.write(frame)
        while self._fifo.samples and self._written < self._target:
            if self._skip:
                dropped = min(self._skip, self._fifo.samples)
                self._fifo.read(dropped)
                self._skip -= dropped
                continue
            chunk = min(self._fifo.samples, self._target - self._written, _AUDIO_CHUNK)
            queued = self._fifo.read(chunk)
            if queued is None:
                break
            self._encode(queued)

    def _silence(self, samples: int) -> None:
        samples = min(samples, self._target - self._written)
        while samples > 0:
            chunk = min(samples, _AUDIO_CHUNK)
            frame = av.AudioFrame(format=_AUDIO_FORMAT, layout=self._layout, samples=chunk)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            self._encode(frame)
            samples -= chunk

    def _encode(self, frame: av.AudioFrame) -> None:
        frame.sample_rate = self._rate
        frame.time_base = Fraction(1, self._rate)
        frame.pts = self._written
        self._out.mux(self._stream.encode(frame))
        self._written += frame.samples

    def end(self) -> None:
        self._queue(self._resampler.resample(None))
        self._silence(self._target - self._written)

    def finish(self) -> None:
        self._out.mux(self._stream.encode(None))


def _even(value: Fraction | float) -> int:
    return 2 * round(value / 2)


def _frame_at(path: Path, at: Fraction) -> av.VideoFrame:
    """The first frame at or after `at` seconds from the video's start, else its last frame."""
    if at > 0:
        with _open(path, None) as container:
            stream = _require_video(container)
            origin, time_base = _origin(stream)
            try:
                # Lands on the keyframe at or before the target; decoding goes on from there.
                container.seek(math.floor(origin + at / time_base), stream=stream, backward=True)
            except av.error.FFmpegError:
                logger.info("The video cannot seek; decoding it from the start")
            else:
                found = _first_frame_from(container, stream, at)
                # A first frame after the target means the seek overshot (an index that
                # counts decode rather than presentation time): then decode from the start.
                if found and (found[1] is None or found[1] <= origin + at / time_base):
                    return found[0]
    with _open(path, None) as container:
        found = _first_frame_from(container, _require_video(container), at)
    if found is None:
        raise MediaError("the input has no video frame that can be decoded")
    return found[0]


def _require_video(container: InputContainer) -> VideoStream:
    stream = _video_stream(container)
    if stream is None:
        raise MediaError("the input has no video stream")
    return stream


def _origin(stream: VideoStream) -> tuple[int, Fraction]:
    assert stream.time_base is not None
    return stream.start_time or 0, stream.time_base


def _first_frame_from(
    container: InputContainer, stream: VideoStream, at: Fraction
) -> tuple[av.VideoFrame, int | None] | None:
    """The first frame decoded from here on whose time is at least `at` (else the last one),
    and the timestamp of the first frame decoded; None when nothing decodes."""
    origin, time_base = _origin(stream)
    target = origin + (at - _TIME_EPSILON) / time_base
    first_pts: int | None = None
    last: av.VideoFrame | None = None
    for packet in _demux(container, [stream], None):
        for frame in _decode(packet, None):
            assert isinstance(frame, av.VideoFrame)
            if last is None:
                first_pts = frame.pts
            if frame.pts is not None and frame.pts >= target:
                return frame, first_pts
            last = frame
    return (last, first_pts) if last is not None else None
