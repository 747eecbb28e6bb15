"""Streaming mp4 writer: H.264 (libx264), yuv420p, constant frame rate, crash-safe.

Frames arrive chunk by chunk from the generator and leave for the encoder at once, so memory
stays constant whatever the length of the video. The file is written under a hidden temporary
name in the destination folder (``.out.mp4.<random>.tmp.mp4``, keeping the suffix so the
muxer picks the same format) and renamed onto the final name only after the muxer has
finished and the data is on disk: a crash or an exception never leaves a truncated file under
the final name. A hard crash (killed process) may leave the hidden temp file behind; it is
never mistaken for a finished video.

Design choices (documented because callers depend on them):

* Sizes must be even: yuv420p stores chroma at half resolution, so an odd side would need
  padding or cropping that silently changes the picture; we raise :class:`VideoError` instead.
* The destination folder must exist: a missing folder is more often a typo than an intent;
  the caller (CLI) creates output folders deliberately.
* Colour: RGB is converted with the BT.709 matrix in limited ("tv") range and the stream is
  tagged so, which is what players assume for H.264; :func:`longtake.video.read_frames`
  converts back with the tags it finds.
* Time base 1/fps with frame i at pts i: the frame count and the frame rate read back exactly.
"""

from __future__ import annotations

import logging
import secrets
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from longtake.atomic import publish_file
from longtake.video.audio_mux import AudioMuxer
from longtake.video.errors import VideoError
from longtake.video.provenance import container_metadata

log = logging.getLogger(__name__)

_MP4_SUFFIXES = (".mp4", ".mov", ".m4v")  # the mov muxer family, which takes ``movflags``
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _temp_path(path: Path) -> Path:
    """A hidden sibling of ``path`` that keeps its suffix (the muxer guesses format from it)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")


class VideoWriter:
    """Write an mp4 chunk by chunk; the file appears under ``path`` only on :meth:`close`.

    Example::

        with VideoWriter("out.mp4", fps=16, width=256, height=256) as w:
            for chunk in generator.stream(timeline, seed=0):
                w.write(chunk.frames)          # (N, H, W, 3) uint8 RGB

    Args:
        path: the final file name, normally ``.mp4`` (the suffix picks the container; ``.mkv``
            works too). Its folder must exist.
        fps: frames per second, a positive integer (constant frame rate).
        width, height: frame size in pixels; both even (yuv420p).
        crf: x264 constant rate factor, 0 (lossless) to 51; 18 is visually near lossless.
        preset: x264 speed/size trade-off, one of :data:`PRESETS`.
        audio: an audio file (e.g. wav) to mux as AAC; cut or padded with silence to the
            video's duration (see :mod:`longtake.video.audio_mux`).
        metadata: extra container tags. A ``comment`` saying the video is AI-generated is
            always added; tags that claim a capture device, place or time raise VideoError.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: int,
        width: int,
        height: int,
        crf: int = 18,
        preset: str = "veryfast",
        audio: str | Path | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.width = width
        self.height = height
        self._check_settings(crf, preset)
        tags = container_metadata(metadata)  # refuses device metadata before touching disk
        if not self.path.parent.is_dir():
            raise VideoError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        if self.path.is_dir():
            raise VideoError(f"cannot write {self.path}: it is a folder")
        self.frames_written = 0
        self._closed = False
        self._audio: AudioMuxer | None = None
        self._tmp = _temp_path(self.path)
        try:
            # faststart moves the index to the front (playable while downloading);
            # use_metadata_tags keeps custom keys such as ``longtake_ai_generated``.
            mp4 = self.path.suffix.lower() in _MP4_SUFFIXES
            options = {"movflags": "+faststart+use_metadata_tags"} if mp4 else {}
            self._container = av.open(str(self._tmp), "w", options=options)
        except (av.FFmpegError, OSError) as err:
            self._tmp.unlink(missing_ok=True)
            raise VideoError(f"cannot create {self.path}: {err}") from None
        try:
            self._container.metadata.update(tags)
            # no-mbtree: x264's macroblock-tree rate control gave different bitstreams for
            # identical input at small sizes (seen here at 32-96 px, 2-8 distinct outputs in 10
            # encodes); without it, the same frames always encode to the same bytes.
            stream = self._container.add_stream(
                "libx264",
                rate=Fraction(fps),
                options={"crf": str(crf), "preset": preset, "x264-params": "no-mbtree=1"},
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            cc = stream.codec_context
            cc.time_base = Fraction(1, fps)
            cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1  # 1 = BT.709
            cc.color_range = 1  # 1 = MPEG / limited ("tv") range
            self._stream = stream
            if audio is not None:
                self._audio = AudioMuxer(self._container, Path(audio))
        except BaseException:
            self.abort()
            raise
        log.debug("writing %s via %s (%dx%d @ %d fps)", self.path, self._tmp.name, width, height, fps)

    def _check_settings(self, crf: int, preset: str) -> None:
        for name, value in (("fps", self.fps), ("width", self.width), ("height", self.height)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise VideoError(f"{name} must be a positive integer, got {value!r}")
        if self.width % 2 or self.height % 2:
            raise VideoError(
                f"frame size {self.width}x{self.height} has an odd side; H.264 yuv420p needs even "
                "width and height (crop or pad the frames by one pixel)"
            )
        if not 0 <= crf <= 51:
            raise VideoError(f"crf must be between 0 and 51, got {crf}")
        if preset not in PRESETS:
            raise VideoError(f"unknown x264 preset {preset!r}; expected one of {', '.join(PRESETS)}")

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        """Validate and return frames as (N, H, W, 3) uint8."""
        if not isinstance(frames, np.ndarray):
            raise VideoError(f"frames must be a numpy array, got {type(frames).__name__}")
        if frames.ndim == 3:
            frames = frames[None]  # (1, H, W, 3)
        expected = f"(N, {self.height}, {self.width}, 3) or ({self.height}, {self.width}, 3)"
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise VideoError(f"frames must have shape {expected} (RGB), got {tuple(frames.shape)}")
        if frames.dtype != np.uint8:
            raise VideoError(
                f"frames must be uint8 RGB in 0..255, got dtype {frames.dtype} "
                "(convert with (x.clip(0, 1) * 255).round().astype(np.uint8))"
            )
        return frames

    def write(self, frames: np.ndarray) -> None:
        """Encode ``frames``: (N, H, W, 3) or (H, W, 3) uint8 RGB. Nothing is kept afterwards."""
        if self._closed:
            raise VideoError(f"cannot write to {self.path}: the writer is closed")
        frames = self._check_frames(frames)
        try:
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(
                    format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
                )
                frame.pts = self.frames_written
                frame.time_base = self._stream.codec_context.time_base
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
                self.frames_written += 1
            if self._audio is not None:
                self._audio.advance(self.frames_written / self.fps)
        except av.FFmpegError as err:
            self.abort()
            raise VideoError(f"encoding {self.path} failed: {err}") from None

    def close(self) -> Path:
        """Flush the encoders, finish the file and move it onto the final name. Idempotent."""
        if self._closed:
            return self.path
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.finish(self.frames_written / self.fps)
            self._container.close()
            publish_file(self._tmp, self.path)
        except BaseException as err:
            self.abort()
            if isinstance(err, av.FFmpegError | OSError):
                raise VideoError(f"finishing {self.path} failed: {err}") from None
            raise
        self._closed = True
        log.info("wrote %s (%d frames, %d fps)", self.path, self.frames_written, self.fps)
        return self.path

    def abort(self) -> None:
        """Stop and delete the temporary file; nothing appears under the final name."""
        if self._closed:
            return
        self._closed = True
        for closer in (self._audio.close if self._audio else None, self._container_close):
            if closer is not None:
                try:
                    closer()
                except Exception:  # already failing; the temp file goes anyway
                    log.debug("ignored error while aborting %s", self.path, exc_info=True)
        self._tmp.unlink(missing_ok=True)
        log.info("aborted %s; temporary file removed", self.path)

    def _container_close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() (e.g. a generator error outside ``with``) must not
        # leave its hidden temp file; it never publishes a partial video either way.
        if not getattr(self, "_closed", True):
            self.abort()
