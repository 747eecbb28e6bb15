"""Small audio helpers: build a silent or tone track and write it as 16-bit PCM wav.

Enough for the render's placeholder soundtrack and for the tests of muxing; real audio
generation is out of scope here. Samples are float in [-1, 1], shape (n,) for mono or
(n, channels).
"""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np

from longtake.video.errors import VideoError


def silence(seconds: float, *, sample_rate: int = 48_000, channels: int = 1) -> np.ndarray:
    """A silent track: float32 zeros of shape (n,) when mono, else (n, channels)."""
    n = max(0, round(seconds * sample_rate))
    return np.zeros((n,) if channels == 1 else (n, channels), dtype=np.float32)


def tone(
    seconds: float,
    *,
    freq: float = 440.0,
    sample_rate: int = 48_000,
    amplitude: float = 0.2,
    channels: int = 1,
) -> np.ndarray:
    """A sine tone: float32, shape (n,) when mono, else (n, channels) with equal channels."""
    n = max(0, round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    wave_ = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return wave_ if channels == 1 else np.repeat(wave_[:, None], channels, axis=1)


def write_wav(path: str | Path, samples: np.ndarray, *, sample_rate: int) -> Path:
    """Write float samples in [-1, 1] (values outside are clipped) as 16-bit PCM wav.

    ``samples`` is (n,) for mono or (n, channels). The file appears atomically (temp file in
    the same folder, then rename), so a reader never sees half a wav.
    """
    path = Path(path)
    data = np.asarray(samples)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[1] < 1 or not np.issubdtype(data.dtype, np.floating):
        raise VideoError(
            f"wav samples must be a float array of shape (n,) or (n, channels), "
            f"got {data.dtype} {tuple(np.shape(samples))}"
        )
    if sample_rate <= 0:
        raise VideoError(f"sample_rate must be positive, got {sample_rate}")
    if not path.parent.is_dir():
        raise VideoError(f"cannot write {path}: folder {path.parent} does not exist")
    pcm = (np.clip(data, -1.0, 1.0) * 32767.0).round().astype("<i2")  # (n, channels)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.wav")
    try:
        with os.fdopen(fd, "wb") as fh, wave.open(fh, "wb") as w:
            w.setnchannels(pcm.shape[1])
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
