"""Lossless video segments (FFV1 in Matroska) for renders that can be resumed.

A resumable render keeps the frames made so far in segments that give back exactly the RGB
bytes that went in (FFV1 on 8-bit RGB (bgr0): no colour conversion, no quantisation), so the final
H.264 encode of a resumed render sees the same frames as an uninterrupted one. FFV1 is
ffmpeg's own lossless codec: always in PyAV's ffmpeg, about 1-2 ms per 128x128 frame.

Segments are written under a temporary name and renamed when closed, like
:class:`~longtake.video.writer.VideoWriter`: a crash leaves no half segment under the final name.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from longtake.atomic import publish_file
from longtake.video.errors import VideoError

SEGMENT_SUFFIX = ".mkv"


class SegmentWriter:
    """Write (N, H, W, 3) uint8 RGB frames losslessly to ``path`` (an .mkv)."""

    def __init__(self, path: str | Path, *, fps: int, width: int, height: int) -> None:
        self.path = Path(path)
        self.width, self.height = width, height
        self.frames_written = 0
        self._tmp = self.path.with_name(f".{self.path.name}.tmp{SEGMENT_SUFFIX}")
        try:
            self._container = av.open(str(self._tmp), "w")
            stream = self._container.add_stream("ffv1", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
            self._stream = stream
        except (av.FFmpegError, OSError) as err:
            self._tmp.unlink(missing_ok=True)
            raise VideoError(f"cannot create segment {self.path}: {err}") from None
        self._closed = False

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise VideoError(f"segment frames must be (N, {self.height}, {self.width}, 3) uint8, got {frames.shape} {frames.dtype}")
        try:
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="bgr0")
                frame.pts = self.frames_written
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
                self.frames_written += 1
        except av.FFmpegError as err:
            self.abort()
            raise VideoError(f"writing segment {self.path} failed: {err}") from None

    def close(self) -> Path:
        if self._closed:
            return self.path
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            publish_file(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._container.close()
        except Exception:  # already failing; the temp file goes anyway
            pass
        self._tmp.unlink(missing_ok=True)


def read_segment(path: str | Path, *, chunk: int = 64) -> Iterator[np.ndarray]:
    """Yield the frames of a segment as (n, H, W, 3) uint8 RGB arrays, n <= ``chunk``."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise VideoError(f"cannot open segment {path}: {err}") from None
    try:
        buf: list[np.ndarray] = []
        for frame in container.decode(video=0):
            buf.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3)
            if len(buf) == chunk:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)
    except av.FFmpegError as err:
        raise VideoError(f"decoding segment {path} failed: {err}") from None
    finally:
        container.close()
