"""longtake.video writer/reader: round trips, chunking, crash safety, audio, provenance."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest

from longtake.errors import LongtakeError
from longtake.video import (
    PROVENANCE_STATEMENT,
    VideoError,
    VideoWriter,
    probe,
    read_frames,
    read_video,
    silence,
    tone,
    write_wav,
)

FPS, W, H = 8, 64, 48


def gradients(n: int, h: int = H, w: int = W) -> np.ndarray:
    """Smooth moving gradients, (n, h, w, 3) uint8: H.264 keeps these within a small error."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = 40 + 150 * x / w + 2 * i
        out[i, ..., 1] = 60 + 120 * y / h
        out[i, ..., 2] = 90 + 60 * (x + y) / (w + h) + i
    return out


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_round_trip(tmp_path: Path) -> None:
    frames = gradients(12)
    path = tmp_path / "out.mp4"
    with VideoWriter(path, fps=FPS, width=W, height=H) as w:
        w.write(frames)
        assert w.frames_written == 12
    info = probe(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (12, FPS, W, H)
    assert info.frame_rate.denominator == 1 and info.duration == pytest.approx(12 / FPS)
    assert info.codec == "h264" and not info.has_audio
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(np.int16) - frames).mean() < 3
    assert leftovers(tmp_path) == ["out.mp4"]


def test_chunked_writes_equal_one_write(tmp_path: Path) -> None:
    frames = gradients(10)
    with VideoWriter(tmp_path / "one.mp4", fps=FPS, width=W, height=H) as w:
        w.write(frames)
    with VideoWriter(tmp_path / "many.mp4", fps=FPS, width=W, height=H) as w:
        w.write(frames[:3])
        w.write(frames[3])  # a single (H, W, 3) frame
        w.write(frames[4:])
    np.testing.assert_array_equal(read_video(tmp_path / "one.mp4"), read_video(tmp_path / "many.mp4"))


def test_read_frames_range_and_chunks(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    with VideoWriter(path, fps=FPS, width=W, height=H) as w:
        w.write(gradients(10))
    full = read_video(path)
    chunks = list(read_frames(path, start=2, stop=9, chunk=3))
    assert [c.shape[0] for c in chunks] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(chunks), full[2:9])


def test_probe_counts_packets_when_container_has_no_count(tmp_path: Path) -> None:
    # Matroska stores no frame count, so probe() must demux and count.
    path = tmp_path / "v.mkv"
    with VideoWriter(path, fps=FPS, width=W, height=H) as w:
        w.write(gradients(13))
    info = probe(path)
    assert (info.num_frames, info.frame_rate) == (13, FPS)
    assert info.duration == pytest.approx(13 / FPS)


def test_abort_and_exception_leave_nothing(tmp_path: Path) -> None:
    w = VideoWriter(tmp_path / "a.mp4", fps=FPS, width=W, height=H)
    w.write(gradients(3))
    w.abort()
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "b.mp4", fps=FPS, width=W, height=H) as w:
            w.write(gradients(3))
            raise RuntimeError("generator failed")
    assert leftovers(tmp_path) == []
    with pytest.raises(VideoError, match="closed"):
        w.write(gradients(1))


def test_bad_input_is_a_video_error(tmp_path: Path) -> None:
    assert issubclass(VideoError, LongtakeError)
    with pytest.raises(VideoError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "x.mp4", fps=FPS, width=W, height=H)
    with pytest.raises(VideoError, match="odd"):
        VideoWriter(tmp_path / "x.mp4", fps=FPS, width=W + 1, height=H)
    with pytest.raises(VideoError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", fps=0, width=W, height=H)
    with VideoWriter(tmp_path / "x.mp4", fps=FPS, width=W, height=H) as w:
        with pytest.raises(VideoError, match="shape"):
            w.write(np.zeros((2, H, W, 4), np.uint8))
        with pytest.raises(VideoError, match="shape"):
            w.write(np.zeros((2, H + 2, W, 3), np.uint8))
        with pytest.raises(VideoError, match="uint8"):
            w.write(np.zeros((2, H, W, 3), np.float32))
        w.write(gradients(2))  # still usable after refused input
    assert probe(tmp_path / "x.mp4").num_frames == 2


def test_probe_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="does not exist"):
        probe(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(VideoError) as err:
        probe(junk)
    assert "\n" not in str(err.value)
    wav = write_wav(tmp_path / "a.wav", silence(0.1, sample_rate=8000), sample_rate=8000)
    with pytest.raises(VideoError, match="no video stream"):
        probe(wav)


@pytest.mark.parametrize("audio_seconds", [1.5, 0.5])  # longer (cut) and shorter (padded)
def test_audio_mux(tmp_path: Path, audio_seconds: float) -> None:
    wav = write_wav(tmp_path / "t.wav", tone(audio_seconds, sample_rate=22050, channels=2), sample_rate=22050)
    path = tmp_path / "av.mp4"
    with VideoWriter(path, fps=FPS, width=W, height=H, audio=wav) as w:
        for i in range(4):
            w.write(gradients(2))
    info = probe(path)
    assert info.has_audio and info.num_frames == 8
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        assert float(a.duration * a.time_base) == pytest.approx(8 / FPS, abs=0.05)


def test_audio_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="does not exist"):
        VideoWriter(tmp_path / "x.mp4", fps=FPS, width=W, height=H, audio=tmp_path / "none.wav")
    assert leftovers(tmp_path) == []


def test_provenance_comment(tmp_path: Path) -> None:
    path = tmp_path / "p.mp4"
    with VideoWriter(path, fps=FPS, width=W, height=H, metadata={"title": "Office day", "comment": "take 3"}) as w:
        w.write(gradients(2))
    meta = probe(path).metadata
    assert "AI-generated" in meta["comment"] and PROVENANCE_STATEMENT in meta["comment"]
    assert meta["comment"].endswith("take 3") and meta["title"] == "Office day"
    assert meta["longtake_ai_generated"] == "true"


@pytest.mark.parametrize(
    "key", ["make", "Model", "com.apple.quicktime.make", "com.apple.quicktime.location.ISO6709", "location", "creation_time"]
)
def test_refuses_fake_device_metadata(tmp_path: Path, key: str) -> None:
    with pytest.raises(VideoError, match="does not disguise generated video as camera footage"):
        VideoWriter(tmp_path / "x.mp4", fps=FPS, width=W, height=H, metadata={key: "Canon"})
    assert leftovers(tmp_path) == []


def test_hard_crash_leaves_no_final_file(tmp_path: Path) -> None:
    final = tmp_path / "crash.mp4"
    code = textwrap.dedent(
        f"""
        import os, numpy as np
        from longtake.video import VideoWriter
        w = VideoWriter({str(final)!r}, fps={FPS}, width={W}, height={H})
        for _ in range(3):
            w.write(np.full((4, {H}, {W}, 3), 128, np.uint8))
        os._exit(1)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 1, proc.stderr.decode()
    assert not final.exists()
    # Only the hidden temp file may remain, and it never carries the final name.
    assert all(name.startswith(".crash.mp4.") and name.endswith(".tmp.mp4") for name in os.listdir(tmp_path))


def test_same_frames_encode_to_same_bytes(tmp_path: Path) -> None:
    # x264's mb-tree made small encodes differ run to run; the writer turns it off.
    frames = gradients(12)
    digests = set()
    for k in range(4):
        with VideoWriter(tmp_path / f"{k}.mp4", fps=FPS, width=W, height=H) as w:
            w.write(frames)
        digests.add((tmp_path / f"{k}.mp4").read_bytes())
    assert len(digests) == 1
