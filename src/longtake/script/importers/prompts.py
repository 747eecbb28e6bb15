"""Interactive prompt files of LongLive / MemFlow (JSON Lines).

Each non-empty line of such a file describes one video::

    {"prompts": ["a cat sleeps on a sofa", "the cat wakes up and stretches"], "switch_frame_indices": [40]}

``prompts`` are the segments in order; ``switch_frame_indices`` (one fewer than the prompts)
are the *latent* frames where the next prompt takes over. Wan's VAE compresses time 4x and
its videos run at 16 fps, so latent frame ``k`` is (about) pixel frame ``4k``: second
``4k / fps``. (The causal VAE's first latent holds a single pixel frame, so the exact pixel
frame is ``4k - 3``; the difference is under a fifth of a second and the planner rounds
shots to whole chunks anyway.)

The total length comes from ``"duration"`` (seconds) or ``"num_output_frames"`` (latent
frames, the name LongLive's configs use). Without either, the last segment lasts as long as
the average earlier one, and a file without switch indices gets 10 s per prompt: the
LongLive/MemFlow interactive protocol uses six 10-second prompts for a 60 s video.
Optional ``"fps"``, ``"title"`` and ``"seed"`` keys set those story fields; other keys
(datasets carry ids and captions) are ignored unless they look like a typo of a known key.

Every prompt becomes one shot of a single scene at location ``scene``. The file holds one
video per line; :func:`parse_prompts` imports the first by default, ``index=`` picks another.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from typing import Any

from longtake.script.errors import FieldPath, ScriptError, ScriptIssue

log = logging.getLogger(__name__)

#: Wan2.1's VAE: one latent frame per 4 pixel frames.
TEMPORAL_COMPRESSION = 4
DEFAULT_FPS = 16
#: Seconds per prompt when nothing says otherwise (LongLive/MemFlow: 6 x 10 s = 60 s).
DEFAULT_SEGMENT_SECONDS = 10.0
KNOWN_KEYS = ("prompts", "switch_frame_indices", "duration", "num_output_frames", "fps", "title", "seed")

Marks = dict[FieldPath, tuple[int, int]]


def _records(text: str) -> list[tuple[int, str, Any]]:
    """(line number, raw line, parsed JSON) of every non-blank line."""
    out = []
    for lineno, raw in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ScriptError(ScriptIssue(f"malformed JSON: {exc.msg}; expected one JSON object per line", line=lineno, column=exc.colno)) from None
        except (ValueError, RecursionError) as exc:  # over-long integers, absurd nesting
            raise ScriptError(ScriptIssue(f"malformed JSON: {exc}; expected one JSON object per line", line=lineno)) from None
        out.append((lineno, raw, value))
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Record:
    """One JSON object and where it sits, for errors that name a key and its column."""

    def __init__(self, lineno: int, raw: str, value: dict[str, Any]):
        self.lineno, self.raw, self.value = lineno, raw, value

    def col(self, key: str) -> int:
        found = self.raw.find(json.dumps(key))
        return found + 1 if found >= 0 else 1

    def error(self, key: str, message: str) -> ScriptError:
        return ScriptError(ScriptIssue(message, (key,) if key else (), line=self.lineno, column=self.col(key) if key else 1))


def _prompts(rec: _Record) -> list[str]:
    prompts = rec.value.get("prompts")
    if prompts is None:
        raise rec.error("", "missing 'prompts'; expected {\"prompts\": [\"first segment\", ...]}")
    if not isinstance(prompts, list):
        raise rec.error("prompts", f"'prompts' must be a list of strings, got {type(prompts).__name__}")
    if not prompts:
        raise rec.error("prompts", "'prompts' is empty; expected at least one prompt")
    for i, item in enumerate(prompts):
        if not isinstance(item, str):
            raise rec.error("prompts", f"prompts[{i}] must be a string, got {type(item).__name__}")
    return prompts


def _switches(rec: _Record, count: int) -> list[int] | None:
    switches = rec.value.get("switch_frame_indices")
    if switches is None:
        return None
    key = "switch_frame_indices"
    if not isinstance(switches, list) or not all(_is_int(k) for k in switches):
        raise rec.error(key, f"'{key}' must be a list of integers (latent frames), got {json.dumps(switches)[:60]}")
    if len(switches) != count - 1:
        raise rec.error(key, f"'{key}' has {len(switches)} entries for {count} prompts; expected {count - 1} (one switch between each pair of prompts)")
    previous = 0
    for i, k in enumerate(switches):
        if k <= previous:
            after = "0" if i == 0 else f"the previous index {previous}"
            raise rec.error(key, f"'{key}' must be strictly increasing and above 0, but entry {i} ({k}) is not above {after}")
        previous = k
    return switches


def _positive(rec: _Record, key: str, integer: bool) -> float | None:
    value = rec.value.get(key)
    if value is None:
        return None
    ok = _is_int(value) if integer else _is_number(value)
    if not ok or not value > 0 or value != value or value == float("inf"):
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise rec.error(key, f"'{key}' must be {kind}, got {json.dumps(value)[:60]}")
    return float(value)


def _durations(rec: _Record, count: int, switches: list[int] | None, fps: int) -> list[float]:
    """Seconds per prompt, from switch indices and the total length (see module docs)."""
    seconds_per_latent = TEMPORAL_COMPRESSION / fps
    duration = _positive(rec, "duration", integer=False)
    frames = _positive(rec, "num_output_frames", integer=True)
    if duration is not None and frames is not None:
        raise rec.error("num_output_frames", "give either 'duration' (seconds) or 'num_output_frames' (latent frames), not both")
    total = duration if duration is not None else (frames * seconds_per_latent if frames is not None else None)
    if switches is None:
        each = total / count if total is not None else DEFAULT_SEGMENT_SECONDS
        return [round(each, 4)] * count
    bounds = [0.0] + [k * seconds_per_latent for k in switches]
    if total is None:
        total = bounds[-1] + (bounds[-1] / len(switches) if switches else DEFAULT_SEGMENT_SECONDS)
    elif total <= bounds[-1]:
        key = "duration" if duration is not None else "num_output_frames"
        raise rec.error(key, f"the video ends at {total:g} s but the last prompt switch is at {bounds[-1]:g} s (latent frame {switches[-1]}); expected a longer '{key}'")
    bounds.append(total)
    return [round(b - a, 4) for a, b in zip(bounds, bounds[1:])]


def _check_keys(rec: _Record) -> None:
    for key in rec.value:
        if key in KNOWN_KEYS:
            continue
        close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1, cutoff=0.8)
        if close:
            raise rec.error(str(key), f"unknown key '{key}' (did you mean '{close[0]}'?); expected some of: {', '.join(KNOWN_KEYS)}")
        log.debug("ignoring key %r on line %d", key, rec.lineno)


def parse_prompts(text: str, index: int = 0) -> tuple[dict[str, Any], Marks]:
    """The ``index``-th video (counting non-empty lines from 0) of a prompt file as Story data.

    Every line must be valid JSON; only the chosen one is imported. Raises
    :class:`ScriptError` for malformed JSON, a missing or wrong ``prompts`` list, or switch
    indices that do not fit the prompts.
    """
    records = _records(text)
    if not records:
        raise ScriptError(ScriptIssue("empty prompt file; expected one JSON object per line, e.g. {\"prompts\": [\"...\"]}", line=1))
    if not 0 <= index < len(records):
        raise ScriptError(ScriptIssue(f"video index {index} is out of range; the file holds {len(records)} (0 to {len(records) - 1})", line=1))
    lineno, raw, value = records[index]
    if not isinstance(value, dict):
        raise ScriptError(ScriptIssue(f"expected a JSON object like {{\"prompts\": [...]}}, got {type(value).__name__}", line=lineno, column=1))
    rec = _Record(lineno, raw, value)
    _check_keys(rec)
    prompts = _prompts(rec)
    fps = value.get("fps", DEFAULT_FPS)
    if not _is_int(fps) or not 1 <= fps <= 240:
        raise rec.error("fps", f"'fps' must be an integer frame rate, got {json.dumps(fps)[:60]}")
    durations = _durations(rec, len(prompts), _switches(rec, len(prompts)), fps)

    at = (lineno, 1)
    marks: Marks = {(): at}
    data: dict[str, Any] = {
        "title": value.get("title", f"Prompt sequence {index + 1}"),
        "fps": fps,
        "locations": [{"id": "scene", "name": "the scene"}],
        "scenes": [{"location": "scene", "shots": []}],
    }
    if "seed" in value:
        data["seed"] = value["seed"]
    for key in ("title", "fps", "seed"):
        if key in value:
            marks[(key,)] = (lineno, rec.col(key))
    prompts_at = (lineno, rec.col("prompts"))
    shots = data["scenes"][0]["shots"]
    for i, (prompt, seconds) in enumerate(zip(prompts, durations)):
        shots.append({"prompt": prompt, "duration": seconds})
        for field in ((), ("prompt",), ("duration",)):
            marks[("scenes", 0, "shots", i, *field)] = prompts_at
    marks[("scenes", 0)] = at
    return data, marks
