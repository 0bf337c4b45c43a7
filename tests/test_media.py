"""reelflow.media (probe, concat, thumbnail) on real small videos, the media activities, and the
HTTP download code they share with the persist activity."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.media as media_activities
from activities.downloads import download
from activities.media import MediaActivities
from activities.persist import PersistActivities
from activities.records import RecordActivities
from reelflow import media
from reelflow.db.engine import Database
from reelflow.emulator.render import VIDEO_CODEC, render_mp4
from reelflow.media import MediaError, concat, probe, thumbnail
from reelflow.netguard import VIDEO, HostAllowlist
from reelflow.storage import LocalStore
from reelflow.types import MediaJobInput, PersistInput

CODEC = "h264" if VIDEO_CODEC == "libx264" else "mpeg4"
FILES_URL = "http://api.test/files"
TONE_PERIOD = 100  # samples: a 441 Hz tone at 44.1 kHz


def render(
    path: Path, *, seconds: float, width: int = 160, height: int = 96, fps: int = 12
) -> Path:
    render_mp4(path, prompt=path.stem, seconds=seconds, width=width, height=height, fps=fps)
    return path


def marked_luma(index: int) -> int:
    """The luma of frame `index` of a `write_video` clip: tells frames apart after encoding."""
    return 16 + 10 * index


def write_video(
    path: Path,
    *,
    seconds: float,
    fps: int = 10,
    width: int = 160,
    height: int = 96,
    codec: Literal["libx264", "mpeg4"] = "libx264",
    audio_rate: int | None = None,
    layout: str = "stereo",
    luma: int | None = None,
    gop: int | None = None,
) -> Path:
    """An MP4 of flat grey frames (frame i has luma `marked_luma(i)` unless `luma` is given),
    with a 441 Hz square tone when `audio_rate` is set, and a keyframe every `gop` frames.
    libx264's defaults use B-frames."""
    frames = round(seconds * fps)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if gop:
            video.codec_context.gop_size = gop
        audio = out.add_stream("aac", rate=audio_rate) if audio_rate else None
        if audio:
            audio.layout = layout
        for index in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            y, u, v = frame.planes
            y.update(bytes([luma or marked_luma(index)]) * y.buffer_size)
            u.update(bytes([128]) * u.buffer_size)
            v.update(bytes([128]) * v.buffer_size)
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio and audio_rate:
            tone = array("f", [0.0] * (1024 + TONE_PERIOD))
            for i in range(len(tone)):
                tone[i] = 0.5 if (i % TONE_PERIOD) < TONE_PERIOD // 2 else -0.5
            data = tone.tobytes()
            total, written = round(seconds * audio_rate), 0
            while written < total:
                count = min(1024, total - written)
                chunk = av.AudioFrame(format="fltp", layout=layout, samples=count)
                offset = (written % TONE_PERIOD) * 4
                for plane in chunk.planes:
                    plane.update(data[offset : offset + count * 4].ljust(plane.buffer_size, b"\0"))
                chunk.sample_rate, chunk.pts = audio_rate, written
                out.mux(audio.encode(chunk))
                written += count
            out.mux(audio.encode(None))
    return path


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def decoded_frames(path: Path) -> Iterator[av.VideoFrame]:
    with av.open(str(path)) as container:
        yield from container.decode(video=0)


def luma_at(frame: av.VideoFrame, x: int, y: int) -> int:
    plane = frame.reformat(format="yuv420p").planes[0]
    return bytes(plane)[y * plane.line_size + x]


def stream_seconds(path: Path, kind: str) -> float:
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if s.type == kind)
        assert stream.duration is not None and stream.time_base is not None
        return float(stream.duration * stream.time_base)


# probe


def test_probe_describes_video_and_audio(tmp_path: Path) -> None:
    info = probe(write_video(tmp_path / "a.mp4", seconds=1, audio_rate=44100))
    assert (info.width, info.height, info.fps, info.frames) == (160, 96, 10.0, 10)
    assert (info.video_codec, info.pix_fmt, info.has_audio, info.audio_codec) == (
        "h264",
        "yuv420p",
        True,
        "aac",
    )
    assert info.duration_s == pytest.approx(1.0, abs=0.03)


def test_probe_of_a_text_file_is_a_media_error(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(MediaError, match="not a video file"):
        probe(tmp_path / "notes.mp4")


# concat: stream copy


def test_matching_inputs_are_stream_copied_and_durations_add_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = [
        render(tmp_path / "a.mp4", seconds=1.0),
        render(tmp_path / "b.mp4", seconds=1.5),
        render(tmp_path / "c.mp4", seconds=0.5),
    ]
    with caplog.at_level(logging.INFO, logger="reelflow.media"):
        info = concat(inputs, tmp_path / "out.mp4")

    assert "video copied" in caplog.text
    assert (info.video_codec, info.width, info.height, info.fps) == (CODEC, 160, 96, 12.0)
    assert info.frames == 36
    assert info.duration_s == pytest.approx(3.0, abs=3 / 12)
    # The very same compressed packets, in order.
    assert video_packets(tmp_path / "out.mp4") == [p for i in inputs for p in video_packets(i)]
    with av.open(str(tmp_path / "out.mp4")) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size and p.pts is not None]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


def test_inputs_with_matching_audio_are_copied_with_their_audio(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = [
        write_video(tmp_path / "a.mp4", seconds=1.0, audio_rate=44100),
        write_video(tmp_path / "b.mp4", seconds=0.5, audio_rate=44100),
    ]
    with caplog.at_level(logging.INFO, logger="reelflow.media"):
        info = concat(inputs, tmp_path / "out.mp4")

    assert "video copied, audio copied" in caplog.text
    assert info.has_audio and info.audio_codec == "aac"
    assert info.duration_s == pytest.approx(1.5, abs=2 / 10)
    assert stream_seconds(tmp_path / "out.mp4", "audio") == pytest.approx(1.5, abs=2 / 10)


def test_a_single_input_is_remuxed(tmp_path: Path) -> None:
    source = render(tmp_path / "a.mp4", seconds=1.0)
    info = concat([source], tmp_path / "out.mp4")
    assert video_packets(tmp_path / "out.mp4") == video_packets(source)
    assert info.duration_s == pytest.approx(1.0, abs=1 / 12)


# concat: re-encode


def test_different_sizes_rates_and_codecs_are_reencoded_at_the_first_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = [
        render(tmp_path / "a.mp4", seconds=1.0, width=160, height=96, fps=12),
        render(tmp_path / "b.mp4", seconds=1.0, width=96, height=160, fps=24),
        write_video(tmp_path / "c.mp4", seconds=0.5, width=320, height=192, codec="mpeg4"),
    ]
    with caplog.at_level(logging.INFO, logger="reelflow.media"):
        info = concat(inputs, tmp_path / "out.mp4")

    assert "re-encoded" in caplog.text
    assert (info.video_codec, info.pix_fmt, info.width, info.height) == (
        CODEC,
        "yuv420p",
        160,
        96,
    )
    # The highest input rate, so no input drops frames.
    assert info.fps == 24.0
    assert info.frames == 24 + 24 + 12
    assert info.duration_s == pytest.approx(2.5, abs=1 / 12 + 1 / 24 + 1 / 10)
    assert not info.has_audio


def test_without_libx264_the_reencode_falls_back_to_mpeg4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media, "_VIDEO_ENCODER", "mpeg4")
    inputs = [
        write_video(tmp_path / "a.mp4", seconds=0.5, luma=200),
        write_video(tmp_path / "b.mp4", seconds=0.5, width=320, height=192, luma=200),
    ]
    info = concat(inputs, tmp_path / "out.mp4")

    assert (info.video_codec, info.width, info.height, info.frames) == ("mpeg4", 160, 96, 10)
    last = list(decoded_frames(tmp_path / "out.mp4"))[-1]
    assert luma_at(last, 80, 48) == pytest.approx(200, abs=4)


def test_other_shapes_are_letterboxed_not_stretched(tmp_path: Path) -> None:
    inputs = [
        write_video(tmp_path / "wide.mp4", seconds=0.5, width=160, height=96, luma=120),
        write_video(tmp_path / "tall.mp4", seconds=0.5, width=96, height=160, luma=200),
    ]
    concat(inputs, tmp_path / "out.mp4")

    last = list(decoded_frames(tmp_path / "out.mp4"))[-1]
    assert (last.width, last.height) == (160, 96)
    # The tall clip fills the height in the middle; black bars at the sides.
    assert luma_at(last, 80, 48) == pytest.approx(200, abs=4)
    assert luma_at(last, 80, 2) == pytest.approx(200, abs=4)
    assert luma_at(last, 4, 48) == pytest.approx(16, abs=4)
    assert luma_at(last, 155, 48) == pytest.approx(16, abs=4)


def test_audio_on_some_inputs_is_kept_and_the_others_get_silence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = [
        write_video(tmp_path / "tone.mp4", seconds=1.0, audio_rate=44100),
        write_video(tmp_path / "mute.mp4", seconds=1.0),
        write_video(tmp_path / "mono.mp4", seconds=0.5, audio_rate=48000, layout="mono"),
    ]
    with caplog.at_level(logging.INFO, logger="reelflow.media"):
        info = concat(inputs, tmp_path / "out.mp4")

    assert "video copied, audio re-encoded" in caplog.text
    assert info.has_audio and info.audio_codec == "aac"
    assert stream_seconds(tmp_path / "out.mp4", "audio") == pytest.approx(2.5, abs=0.05)
    loudness: dict[str, float] = {"tone": 0.0, "mute": 0.0, "mono": 0.0}
    with av.open(str(tmp_path / "out.mp4")) as container:
        for frame in container.decode(audio=0):
            assert frame.time is not None
            # Stay clear of the joins, where AAC frames straddle two inputs.
            segment = "tone" if frame.time < 0.9 else "mute" if 1.1 < frame.time < 1.9 else "mono"
            if segment == "mono" and frame.time < 2.1:
                continue
            peak = max(abs(s) for s in array("f", bytes(frame.planes[0]))[: frame.samples])
            loudness[segment] = max(loudness[segment], peak)
    assert loudness["tone"] > 0.3
    assert loudness["mute"] < 0.001
    assert loudness["mono"] > 0.3


def test_progress_is_reported_and_raising_from_it_stops_the_work(tmp_path: Path) -> None:
    inputs = [render(tmp_path / "a.mp4", seconds=1.0), render(tmp_path / "b.mp4", seconds=1.0)]
    seen: list[float] = []
    concat(inputs, tmp_path / "out.mp4", progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(2.0, abs=1 / 12)

    def stop(seconds: float) -> None:
        if seconds > 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        concat(inputs, tmp_path / "stopped.mp4", progress=stop)


# concat: errors


def test_concat_without_inputs_is_a_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="at least one input"):
        concat([], tmp_path / "out.mp4")


def test_concat_names_the_input_that_is_not_a_video(tmp_path: Path) -> None:
    good = render(tmp_path / "a.mp4", seconds=0.5)
    (tmp_path / "page.html").write_text("<html>404 not found</html>")

    with pytest.raises(MediaError, match="input 2 is not a video file") as caught:
        concat([good, tmp_path / "page.html"], tmp_path / "out.mp4")
    assert caught.value.input_index == 1
    assert "Traceback" not in str(caught.value)


def test_concat_of_audio_only_input_says_it_has_no_video(tmp_path: Path) -> None:
    with av.open(str(tmp_path / "sound.m4a"), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts = 44100, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    good = render(tmp_path / "a.mp4", seconds=0.5)

    with pytest.raises(MediaError, match="input 1 has no video stream"):
        concat([tmp_path / "sound.m4a", good], tmp_path / "out.mp4")


# thumbnail


@pytest.fixture(scope="module")
def marked_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 10 fps, frame i with luma `marked_luma(i)`, a keyframe every 4 frames (so seeks
    land mid-stream), B-frames and a soundtrack."""
    path = tmp_path_factory.mktemp("clip") / "marked.mp4"
    return write_video(path, seconds=2.0, width=176, height=100, audio_rate=44100, gop=4)


@pytest.mark.parametrize(
    ("at_seconds", "frame_index"),
    [(0, 0), (1.0, 10), (0.95, 10), (1.04, 11), (1.3, 13), (1.9, 19), (2.0, 19), (99, 19)],
    ids=["start", "middle", "first-after", "between", "off-keyframe", "last", "end", "past-end"],
)
@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_thumbnail_is_the_frame_at_or_after_the_time(
    marked_clip: Path,
    tmp_path: Path,
    at_seconds: float,
    frame_index: int,
    image_format: Literal["jpeg", "png"],
) -> None:
    output = tmp_path / f"thumb.{image_format}"
    info = thumbnail(marked_clip, output, at_seconds=at_seconds, format=image_format)

    magic = b"\xff\xd8\xff" if image_format == "jpeg" else b"\x89PNG\r\n\x1a\n"
    assert output.read_bytes().startswith(magic)
    assert (info.width, info.height, info.frames) == (176, 100, 1)
    (image,) = list(decoded_frames(output))
    assert (image.width, image.height) == (176, 100)
    # Full-range luma in the image: (Y - 16) * 255 / 219.
    expected = (marked_luma(frame_index) - 16) * 255 / 219
    assert luma_at(image, 88, 50) == pytest.approx(expected, abs=4)


def test_thumbnail_rejects_negative_times_and_unknown_formats(
    marked_clip: Path, tmp_path: Path
) -> None:
    with pytest.raises(MediaError, match=">= 0"):
        thumbnail(marked_clip, tmp_path / "t.jpg", at_seconds=-1, format="jpeg")
    with pytest.raises(MediaError, match="'jpeg' or 'png'"):
        thumbnail(marked_clip, tmp_path / "t.gif", at_seconds=0, format="gif")  # type: ignore[arg-type]


def test_thumbnail_of_a_non_video_is_a_media_error(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_bytes(b"\0" * 1000)
    with pytest.raises(MediaError, match="not a video file"):
        thumbnail(tmp_path / "x.mp4", tmp_path / "t.jpg", at_seconds=0, format="jpeg")


# Activities


class Web:
    """An httpx.MockTransport serving a few files, recording what was fetched."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.requested: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requested.append(str(request.url))
        path = self.files.get(str(request.url))
        if path is None:
            return httpx.Response(404)
        return httpx.Response(200, content=path.read_bytes(), headers={"content-type": "video/mp4"})


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "files", FILES_URL)


def make_activities(
    store: LocalStore, web: Web, *, max_input_bytes: int = 10**8
) -> MediaActivities:
    http = httpx.AsyncClient(transport=httpx.MockTransport(web.handler))
    return MediaActivities(
        http=http,
        store=store,
        allowed_hosts=HostAllowlist("media inputs", ["cdn.example"]),
        max_input_bytes=max_input_bytes,
    )


def job(urls: list[str], **params: object) -> MediaJobInput:
    return MediaJobInput(job_record_id="j1", execution_id="e1", input_urls=urls, params=params)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_concat_activity_reads_own_outputs_from_the_store_and_others_over_http(
    store: LocalStore, tmp_path: Path
) -> None:
    parent = render(tmp_path / "parent.mp4", seconds=1.0)
    own_url = await store.put_file(
        key="executions/e1/j0/output-0.mp4", path=parent, content_type="video/mp4"
    )
    web = Web({"https://cdn.example/clip.mp4": render(tmp_path / "clip.mp4", seconds=0.5)})
    heartbeats: list[object] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.extend(details)

    result = await env.run(
        make_activities(store, web).concat, job([own_url, "https://cdn.example/clip.mp4", own_url])
    )

    (output,) = result.outputs
    assert web.requested == ["https://cdn.example/clip.mp4"]
    assert output.key == "executions/e1/j1/output-0.mp4"
    assert output.url == f"{FILES_URL}/executions/e1/j1/output-0.mp4"
    assert output.content_type == "video/mp4"
    stored = store.root / output.key
    assert (output.bytes, output.sha256) == (stored.stat().st_size, sha256_of(stored))
    assert output.duration_s == pytest.approx(2.5, abs=3 / 12)
    assert (output.width, output.height, output.fps) == (160, 96, 12.0)
    assert probe(stored).frames == 30
    assert heartbeats


async def test_thumbnail_activity_stores_a_png_with_the_video_size(
    store: LocalStore, marked_clip: Path
) -> None:
    web = Web({"https://cdn.example/v.mp4": marked_clip})
    result = await ActivityEnvironment().run(
        make_activities(store, web).thumbnail,
        job(["https://cdn.example/v.mp4"], atSeconds=1.5, format="png"),
    )

    (output,) = result.outputs
    assert output.key == "executions/e1/j1/output-0.png"
    assert output.content_type == "image/png"
    assert (output.width, output.height) == (176, 100)
    assert output.duration_s is None and output.fps is None
    assert (store.root / output.key).read_bytes().startswith(b"\x89PNG")


async def test_thumbnail_activity_defaults_to_a_jpeg_of_the_first_frame(
    store: LocalStore, marked_clip: Path
) -> None:
    url = await store.put_file(key="in/v.mp4", path=marked_clip, content_type="video/mp4")
    result = await ActivityEnvironment().run(make_activities(store, Web({})).thumbnail, job([url]))

    (output,) = result.outputs
    assert output.key == "executions/e1/j1/output-0.jpg"
    assert output.content_type == "image/jpeg"
    (image,) = list(decoded_frames(store.root / output.key))
    assert luma_at(image, 88, 50) == pytest.approx(0, abs=4)


async def test_unusable_input_fails_without_retry_naming_its_url(
    store: LocalStore, tmp_path: Path
) -> None:
    (tmp_path / "page.html").write_text("<html>hello</html>")
    web = Web(
        {
            "https://cdn.example/ok.mp4": render(tmp_path / "ok.mp4", seconds=0.5),
            "https://cdn.example/page": tmp_path / "page.html",
        }
    )
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            make_activities(store, web).concat,
            job(["https://cdn.example/ok.mp4", "https://cdn.example/page"]),
        )
    assert caught.value.non_retryable and caught.value.type == "InvalidMedia"
    assert "input 2" in str(caught.value) and "https://cdn.example/page" in str(caught.value)
    assert not (store.root / "executions").exists()


@pytest.mark.parametrize(
    ("operation", "params", "urls", "message"),
    [
        ("concat", {}, [], "at least one input"),
        ("thumbnail", {}, ["https://cdn.example/a.mp4"] * 2, "one input"),
        ("thumbnail", {"atSeconds": "soon"}, ["https://cdn.example/a.mp4"], "atSeconds"),
        ("thumbnail", {"format": "gif"}, ["https://cdn.example/a.mp4"], "'jpeg' or 'png'"),
    ],
)
async def test_bad_params_fail_without_retry(
    store: LocalStore, operation: str, params: dict[str, object], urls: list[str], message: str
) -> None:
    activities = make_activities(store, Web({}))
    with pytest.raises(ApplicationError, match=message) as caught:
        await ActivityEnvironment().run(getattr(activities, operation), job(urls, **params))
    assert caught.value.non_retryable


async def test_missing_inputs_fail_without_retry(store: LocalStore) -> None:
    activities = make_activities(store, Web({}))
    for url in ["https://cdn.example/gone.mp4", f"{FILES_URL}/executions/e0/j0/output-0.mp4"]:
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(activities.concat, job([url]))
        assert caught.value.type == "InputExpired" and caught.value.non_retryable


async def test_inputs_over_the_size_cap_are_refused(store: LocalStore, tmp_path: Path) -> None:
    clip = render(tmp_path / "clip.mp4", seconds=0.5)
    own_url = await store.put_file(key="in/clip.mp4", path=clip, content_type="video/mp4")
    activities = make_activities(
        store, Web({"https://cdn.example/clip.mp4": clip}), max_input_bytes=100
    )
    for url in ["https://cdn.example/clip.mp4", own_url]:
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(activities.concat, job([url]))
        assert caught.value.type == "InputTooLarge" and caught.value.non_retryable


async def test_long_media_work_heartbeats_and_stops_when_cancelled(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = threading.Event()

    def slow_concat(
        inputs: list[Path], output: Path, *, progress: Callable[[float], None]
    ) -> media.MediaInfo:
        try:
            for step in range(1000):
                progress(step / 10)
                time.sleep(0.005)
        except BaseException:
            stopped.set()
            raise
        raise AssertionError("not cancelled")

    monkeypatch.setattr(media, "concat", slow_concat)
    monkeypatch.setattr(media_activities, "HEARTBEAT_INTERVAL_S", 0.02)
    url = await store.put_file(
        key="in/a.mp4", path=render(tmp_path / "a.mp4", seconds=0.5), content_type="video/mp4"
    )
    env = ActivityEnvironment()

    def on_heartbeat(*details: object) -> None:
        if any("output written" in str(d) for d in details):
            env.cancel()

    env.on_heartbeat = on_heartbeat
    started = time.monotonic()
    with pytest.raises(BaseException) as caught:
        await env.run(make_activities(store, Web({})).concat, job([url]))

    assert "Cancel" in type(caught.value).__name__
    assert stopped.is_set()
    assert time.monotonic() - started < 2


def test_ntsc_frame_rates_are_kept_exactly(tmp_path: Path) -> None:
    # 30000/1001 inputs keep their exact rate rather than a rounded 29.97.
    path = tmp_path / "ntsc.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(15):
            frame = av.VideoFrame(64, 48, "yuv420p")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    other = write_video(tmp_path / "b.mp4", seconds=0.5, width=64, height=48, fps=10)

    info = concat([path, other], tmp_path / "out.mp4")

    assert info.fps == pytest.approx(30000 / 1001, abs=0.01)
    assert info.duration_s == pytest.approx(15 * 1001 / 30000 + 0.5, abs=1 / 10 + 1001 / 30000)


# Downloads, shared with the persist activity


# The hosts the stand-in provider's outputs and their redirects are on.
OUTPUT_HOSTS = {"veo": HostAllowlist("veo outputs", ["api.test", "storage.test", "cdn.example"])}


class KeyedProvider:
    """Just enough of a Provider for persist: a key for the API host only (as Veo does)."""

    name = "veo"

    def download_headers(self, url: str) -> dict[str, str]:
        return {"x-goog-api-key": "secret"} if url.startswith("https://api.test/") else {}


async def test_persist_follows_redirects_sending_the_key_to_the_api_host_only(
    store: LocalStore, tmp_path: Path, db: Database
) -> None:
    # A real video: persist probes what it stores, so that an unplayable output fails the job.
    video = render(tmp_path / "v.mp4", seconds=0.5).read_bytes()
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("x-goog-api-key")))
        if request.url.host == "api.test":
            return httpx.Response(302, headers={"location": "https://storage.test/v.mp4"})
        return httpx.Response(200, content=video, headers={"content-type": "video/mp4"})

    persist = PersistActivities(
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        store=store,
        providers={"veo": KeyedProvider()},  # type: ignore[dict-item]
        allowed_hosts=OUTPUT_HOSTS,
        max_output_bytes=10**6,
        records=RecordActivities(db=db),
    )
    result = await ActivityEnvironment().run(
        persist.persist,
        PersistInput("j1", "e1", "veo", ["https://api.test/v1beta/files/f:download"]),
    )

    assert seen == [
        ("https://api.test/v1beta/files/f:download", "secret"),
        ("https://storage.test/v.mp4", None),
    ]
    (output,) = result.outputs
    assert (output.key, output.content_type, output.bytes) == (
        "executions/e1/j1/output-0.mp4",
        "video/mp4",
        len(video),
    )
    assert output.sha256 == hashlib.sha256(video).hexdigest()
    assert output.duration_s == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize(
    ("respond", "error_type", "retryable", "message"),
    [
        (lambda: httpx.Response(404), "OutputExpired", False, "is gone (HTTP 404); the provider"),
        (lambda: httpx.Response(410), "OutputExpired", False, "is gone (HTTP 410)"),
        (lambda: httpx.Response(400), "DownloadFailed", False, "HTTP 400"),
        (lambda: httpx.Response(429), "DownloadFailed", True, "HTTP 429"),
        (lambda: httpx.Response(503), "DownloadFailed", True, "HTTP 503"),
        (lambda: httpx.Response(200, content=b"x" * 2000), "OutputTooLarge", False, "larger"),
        (
            lambda: httpx.Response(302, headers={"location": "https://cdn.example/loop"}),
            "DownloadFailed",
            False,
            "redirects",
        ),
    ],
    ids=["404", "410", "400", "429", "503", "too-large", "redirect-loop"],
)
async def test_persist_download_failures_keep_their_types_and_retryability(
    store: LocalStore,
    respond: Callable[[], httpx.Response],
    error_type: str,
    retryable: bool,
    message: str,
    db: Database,
) -> None:
    persist = PersistActivities(
        http=httpx.AsyncClient(transport=httpx.MockTransport(lambda _: respond())),
        store=store,
        providers={"veo": KeyedProvider()},  # type: ignore[dict-item]
        allowed_hosts=OUTPUT_HOSTS,
        max_output_bytes=1000,
        records=RecordActivities(db=db),
    )
    with pytest.raises(ApplicationError, match=re.escape(message)) as caught:
        await ActivityEnvironment().run(
            persist.persist, PersistInput("j1", "e1", "veo", ["https://cdn.example/out.mp4"])
        )
    assert caught.value.type == error_type
    assert caught.value.non_retryable is not retryable


async def test_a_network_error_while_downloading_is_retryable(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(ApplicationError) as caught:
            await ActivityEnvironment().run(
                download,
                http,
                "https://cdn.example/a.mp4",
                tmp_path / "a",
                allowed=HostAllowlist("media inputs", ["cdn.example"]),
                accept=VIDEO,
                max_bytes=10,
            )
    assert caught.value.type == "DownloadFailed" and not caught.value.non_retryable
    assert "ConnectError" in str(caught.value)
