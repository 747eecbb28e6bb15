"""Read videos back: exact metadata (:func:`probe`) and frames in bounded chunks.

Frame counts are exact: when the container does not state the number of frames, we count
the video packets by demuxing (no decoding), which is fast even for long files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from longtake.video.errors import VideoError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found in a video file.

    ``fps`` and ``frame_rate`` are the same rate as float and exact Fraction; ``duration`` is
    the video stream's length in seconds (``num_frames / frame_rate`` for constant-rate
    video); ``metadata`` holds the container tags (e.g. longtake's provenance ``comment``).
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_rate: Fraction
    num_frames: int
    duration: float
    has_audio: bool
    codec: str
    metadata: dict[str, str] = field(default_factory=dict)


@contextmanager
def _open(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open ``path`` for reading, turning every failure into a one-line VideoError."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video file {path} does not exist")
    if not path.is_file():
        raise VideoError(f"{path} is not a file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise VideoError(f"{path} is not a readable video file ({err.__class__.__name__})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path} has no video stream")
        yield container
    finally:
        container.close()


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Count the video stream's frames by demuxing packets (one packet = one frame in H.264)."""
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


# AVColorSpace codes (libavutil/pixfmt.h) -> swscale matrices; untagged video uses BT.601, as
# ffmpeg does. BT.709 is what VideoWriter writes and tags.
_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M"}
_UNSPECIFIED_SPACE, _UNSPECIFIED_RANGE, _FULL_RANGE = 2, 0, 2


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Decode one frame to (H, W, 3) uint8 RGB with the matrix and range it is tagged with.

    PyAV 16 ignores explicit ``src_colorspace``/``src_color_range`` on a frame that carries
    colour tags, so we read the tags, clear them, and pass them explicitly.
    """
    matrix = _MATRIX.get(int(frame.colorspace), "ITU601")
    color_range = "JPEG" if int(frame.color_range) == _FULL_RANGE else "MPEG"
    frame.colorspace, frame.color_range = _UNSPECIFIED_SPACE, _UNSPECIFIED_RANGE
    return frame.to_ndarray(format="rgb24", src_colorspace=matrix, src_color_range=color_range)


def probe(path: str | Path) -> VideoInfo:
    """Describe the video at ``path``; raises :class:`VideoError` if it is missing or not a video."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoError(f"{path}: the video stream has no frame rate")
        frame_rate = Fraction(rate)
        num_frames = stream.frames
        if not num_frames:
            try:
                num_frames = _count_packets(container, stream)
            except av.FFmpegError as err:
                raise VideoError(f"{path}: cannot read the video stream ({err})") from None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = float(num_frames / frame_rate)
        cc = stream.codec_context
        return VideoInfo(
            path=Path(path),
            width=cc.width,
            height=cc.height,
            fps=float(frame_rate),
            frame_rate=frame_rate,
            num_frames=int(num_frames),
            duration=duration,
            has_audio=bool(container.streams.audio),
            codec=cc.name,
            metadata=dict(container.metadata),
        )


def read_frames(
    path: str | Path, *, start: int = 0, stop: int | None = None, chunk: int = 64
) -> Iterator[np.ndarray]:
    """Yield frames ``[start, stop)`` of ``path`` as (n, H, W, 3) uint8 RGB chunks, n <= chunk.

    Memory is one chunk whatever the length. Frames are decoded from the start of the file
    and those before ``start`` skipped (exact, no keyframe seeking); the file is closed when
    the iterator ends or is closed.
    """
    if start < 0 or (stop is not None and stop < start) or chunk < 1:
        raise VideoError(f"bad frame range: start={start}, stop={stop}, chunk={chunk}")
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading: decoding is the cost here
        buf: list[np.ndarray] = []
        index = 0
        try:
            for frame in container.decode(stream):
                if stop is not None and index >= stop:
                    break
                if index >= start:
                    buf.append(_to_rgb(frame))  # (H, W, 3)
                    if len(buf) == chunk:
                        yield np.stack(buf)  # (chunk, H, W, 3)
                        buf = []
                index += 1
        except av.FFmpegError as err:
            raise VideoError(f"{path}: decoding failed at frame {index} ({err})") from None
        if buf:
            yield np.stack(buf)  # (n, H, W, 3)


def read_video(path: str | Path, *, max_frames: int = 4096) -> np.ndarray:
    """All frames of a short video as one (N, H, W, 3) uint8 RGB array.

    Refuses files longer than ``max_frames`` (raise it deliberately, or stream with
    :func:`read_frames`), so a long render is never loaded into memory by accident.
    """
    info = probe(path)
    if info.num_frames > max_frames:
        raise VideoError(
            f"{path} has {info.num_frames} frames, more than max_frames={max_frames}; "
            "use read_frames() to stream it"
        )
    chunks = list(read_frames(path, chunk=max(1, min(info.num_frames, 256))))
    if not chunks:
        return np.zeros((0, info.height, info.width, 3), dtype=np.uint8)
    return np.concatenate(chunks)
