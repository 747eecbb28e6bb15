"""Streaming audio muxing for :class:`~longtake.video.writer.VideoWriter` (internal).

The audio file is decoded with PyAV, resampled to what the AAC encoder takes (planar float,
the input rate when AAC supports it, mono or stereo), re-framed to the encoder's frame size
and encoded *while the video is written*: after every video chunk the track is brought up to
the video's current time. Interleaving as we go keeps the muxer's queue short, so memory stays
constant however long the video is.

Length policy: the audio track is cut to the video's duration when the file is longer, and
padded with silence up to it when the file is shorter, so both streams end together.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from longtake.video.errors import VideoError

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_FALLBACK_RATE = 48_000
_AAC_FRAME = 1024  # samples per AAC frame; the encoder reports it only once it is open
_BIT_RATE = 128_000


class AudioMuxer:
    """Decode ``source`` and encode it as AAC into ``container``, up to a moving end time."""

    def __init__(self, container: av.container.OutputContainer, source: Path) -> None:
        if not source.is_file():
            raise VideoError(f"audio file {source} does not exist")
        try:
            self._input = av.open(str(source))
        except av.FFmpegError as err:
            raise VideoError(f"cannot read audio file {source}: {err}") from None
        try:
            if not self._input.streams.audio:
                raise VideoError(f"{source} has no audio stream")
            in_stream = self._input.streams.audio[0]
            in_rate = in_stream.codec_context.sample_rate or _FALLBACK_RATE
            self.rate = in_rate if in_rate in _AAC_RATES else _FALLBACK_RATE
            self.layout = "mono" if in_stream.codec_context.channels == 1 else "stereo"
            # aac_coder=fast: markedly faster than the default two-loop search; fine for a soundtrack.
            self._stream = container.add_stream(
                "aac", rate=self.rate, layout=self.layout, options={"aac_coder": "fast"}
            )
            self._stream.codec_context.bit_rate = _BIT_RATE
            self._stream.codec_context.time_base = Fraction(1, self.rate)
        except BaseException:
            self._input.close()
            raise
        self._container = container
        self._resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        self._frames = self._input.decode(in_stream)
        self._exhausted = False
        self._pending: list[np.ndarray] = []  # resampled, not yet encoded; each (channels, n)
        self._pending_len = 0
        self._emitted = 0  # samples sent to the encoder so far

    def _decode_until(self, samples: int) -> None:
        """Decode and resample until ``samples`` are emitted or pending, or the input ends."""
        while not self._exhausted and self._emitted + self._pending_len < samples:
            try:
                frame = next(self._frames)
            except StopIteration:
                self._exhausted = True
                out = self._resampler.resample(None)  # flush the resampler's tail
            except av.FFmpegError as err:
                raise VideoError(f"cannot decode audio: {err}") from None
            else:
                out = self._resampler.resample(frame)
            for f in out:
                arr = f.to_ndarray().astype(np.float32, copy=False)  # (channels, n)
                self._pending.append(arr)
                self._pending_len += arr.shape[1]

    def _take(self, n: int) -> np.ndarray:
        """Remove the first ``n`` pending samples (zeros past the end of the input)."""
        channels = 1 if self.layout == "mono" else 2
        have = np.concatenate(self._pending, axis=1) if self._pending else np.zeros((channels, 0), np.float32)
        if have.shape[1] < n:  # input ran out: pad with silence so audio ends with the video
            have = np.concatenate([have, np.zeros((channels, n - have.shape[1]), np.float32)], axis=1)
        head, rest = have[:, :n], have[:, n:]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_len = rest.shape[1]
        return np.ascontiguousarray(head)

    def _encode(self, samples: np.ndarray | None) -> None:
        frame = None
        if samples is not None:
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self._emitted
            frame.time_base = Fraction(1, self.rate)
            self._emitted += samples.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def advance(self, seconds: float) -> None:
        """Encode whole AAC frames up to ``seconds`` of audio (the video's current end)."""
        target = int(seconds * self.rate)
        self._decode_until(target)
        while self._emitted + _AAC_FRAME <= target:
            self._encode(self._take(_AAC_FRAME))

    def finish(self, seconds: float) -> None:
        """Encode the rest up to exactly ``seconds`` (cut or padded), then flush the encoder."""
        target = round(seconds * self.rate)
        self.advance(seconds)
        if target > self._emitted:  # a short last frame; the AAC encoder accepts one
            self._decode_until(target)
            self._encode(self._take(target - self._emitted))
        self._encode(None)
        self.close()

    def close(self) -> None:
        """Release the input file (safe to call twice)."""
        self._input.close()
