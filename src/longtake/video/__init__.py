"""longtake.video: streaming mp4 writing and reading, audio muxing, manifest and provenance.

Knows nothing about models: it takes (N, H, W, 3) uint8 RGB frames and writes honest,
crash-safe mp4 files with a JSON sidecar that records how they were made.
"""

from longtake.video.audio import silence, tone, write_wav
from longtake.video.errors import VideoError
from longtake.video.manifest import (
    MANIFEST_FORMAT,
    build_manifest,
    manifest_path,
    package_versions,
    sha256_file,
    write_manifest,
)
from longtake.video.provenance import PROVENANCE_COMMENT, PROVENANCE_STATEMENT
from longtake.video.reader import VideoInfo, probe, read_frames, read_video
from longtake.video.writer import PRESETS, VideoWriter

__all__ = [
    "MANIFEST_FORMAT",
    "PRESETS",
    "PROVENANCE_COMMENT",
    "PROVENANCE_STATEMENT",
    "VideoError",
    "VideoInfo",
    "VideoWriter",
    "build_manifest",
    "manifest_path",
    "package_versions",
    "probe",
    "read_frames",
    "read_video",
    "sha256_file",
    "silence",
    "tone",
    "write_manifest",
    "write_wav",
]
