"""Reading scripts from disk: format dispatch, guards, YAML/JSON with line numbers.

Every format goes through the same three steps:

1. :func:`read_text` - size cap, binary junk and encoding checks on the raw bytes;
2. an importer turns the text into plain data plus a map of field paths to (line, column);
3. :func:`build_story` validates the data as a :class:`~longtake.script.schema.Story` and
   turns every pydantic or cross-reference problem into a :class:`ScriptIssue` that names
   the file, the line, the field path and what was expected.

Only :class:`ScriptError` leaves this module for bad input.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from longtake.atomic import write_text_atomic
from longtake.script.errors import FieldPath, ScriptError, ScriptIssue
from longtake.script.schema import Story

#: Scripts larger than this are refused before parsing (a story of hours fits in far less).
MAX_SCRIPT_BYTES = 4 * 1024 * 1024

Marks = dict[FieldPath, tuple[int, int]]
Importer = Callable[[str], tuple[Any, Marks]]

FORMATS: dict[str, tuple[str, ...]] = {
    "yaml": (".yaml", ".yml"),
    "json": (".json",),
    "text": (".txt",),
    "prompts": (".jsonl",),
    "fountain": (".fountain", ".spmd"),
}


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for group in FORMATS.values() for s in group)
    raise ScriptError(ScriptIssue(f"unknown script format '{suffix or '(no suffix)'}'; expected a file ending in {known}", file=str(path)))


def read_text(path: Path) -> str:
    """The file's text, or a ScriptError for a missing, huge, binary or non-UTF-8 file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ScriptError(ScriptIssue("file not found", file=str(path))) from None
    except OSError as exc:
        raise ScriptError(ScriptIssue(f"cannot read file: {exc.strerror}", file=str(path))) from None
    if path.is_dir():
        raise ScriptError(ScriptIssue("is a directory; expected a script file", file=str(path)))
    if size > MAX_SCRIPT_BYTES:
        raise ScriptError(ScriptIssue(f"file is {size} bytes; scripts are limited to {MAX_SCRIPT_BYTES} bytes", file=str(path)))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScriptError(ScriptIssue(f"cannot read file: {exc.strerror}", file=str(path))) from None
    return decode_text(data, str(path))


def decode_text(data: bytes, name: str) -> str:
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ScriptError(ScriptIssue("binary data (NUL byte); expected a UTF-8 text script", file=name, line=line))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScriptError(ScriptIssue(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); expected a UTF-8 text script", file=name, line=line)) from None
    bad = next((i for i, ch in enumerate(text) if ord(ch) < 32 and ch not in "\t\n\r"), None)
    if bad is not None:
        line = text.count("\n", 0, bad) + 1
        raise ScriptError(ScriptIssue(f"control character U+{ord(text[bad]):04X}; expected plain text", file=name, line=line))
    return text


# --- YAML / JSON with positions ------------------------------------------------------------


#: Aliases let a few lines of YAML expand into billions of nodes ("billion laughs"); a story
#: of hours has a few thousand, so anything past this is refused before it is built.
MAX_YAML_NODES = 200_000


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """Number of nodes once aliases are expanded; a ScriptError for a cycle or a bomb."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:  # an alias inside its own anchor: the data would be infinite
        mark = node.start_mark
        raise ScriptError(ScriptIssue("malformed YAML: an alias refers to the node that contains it", line=mark.line + 1, column=mark.column + 1))
    active.add(key)
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, memo, active)
        if total > MAX_YAML_NODES:
            raise ScriptError(ScriptIssue(f"malformed YAML: more than {MAX_YAML_NODES} values once aliases are expanded", line=1))
    active.discard(key)
    memo[key] = total
    return total


DUPLICATE_KEY = "duplicate key"


def _node_marks(node: yaml.Node, path: FieldPath, marks: Marks) -> None:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key in first_seen:
                # PyYAML silently keeps the last value; a repeated key is almost always a mistake
                raise ScriptError(ScriptIssue(f"{DUPLICATE_KEY} '{key}' (first at line {first_seen[key]}); each field may appear once", path, line=line, column=col))
            first_seen[key] = line
            # the key's own position: where an "unknown field" error should point
            marks[(*path, f"\x00key:{key}")] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _node_marks(value_node, (*path, key), marks)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _node_marks(item, (*path, i), marks)


def parse_yaml(text: str) -> tuple[Any, Marks]:
    """YAML (or JSON, a subset of YAML) to data plus field-path positions."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _expanded_size(node, {}, set())
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ScriptError(
            ScriptIssue(f"malformed YAML: {what}", line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None)
        ) from None
    except yaml.YAMLError as exc:
        raise ScriptError(ScriptIssue(f"malformed YAML: {exc}")) from None
    except RecursionError:
        raise ScriptError(ScriptIssue("malformed YAML: nested too deeply")) from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors raise these for values that scan but cannot be built:
        # an int past Python's digit limit, "!!timestamp" on a non-date.
        raise ScriptError(ScriptIssue(f"malformed YAML: cannot build a value ({exc})")) from None
    marks: Marks = {}
    if node is not None:
        _node_marks(node, (), marks)
    return data, marks


def parse_json(text: str) -> tuple[Any, Marks]:
    if not text.strip():  # same message as an empty YAML file, not "Expecting value"
        return None, {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScriptError(ScriptIssue(f"malformed JSON: {exc.msg}", line=exc.lineno, column=exc.colno)) from None
    except RecursionError:
        raise ScriptError(ScriptIssue("malformed JSON: nested too deeply")) from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise ScriptError(ScriptIssue(f"malformed JSON: {exc}")) from None
    try:  # JSON is (almost always) YAML: borrow YAML's positions for error messages
        _, marks = parse_yaml(text)
    except ScriptError as exc:
        if exc.issues[0].message.startswith(DUPLICATE_KEY):  # json.loads keeps the last silently
            raise
        marks = {}
    return data, marks


# --- validation -------------------------------------------------------------------------


def _locate(path: FieldPath, marks: Marks) -> tuple[int | None, int | None]:
    for n in range(len(path), -1, -1):
        if path[:n] in marks:
            return marks[path[:n]]
    return None, None


def _issue_from_pydantic(err: dict[str, Any], marks: Marks) -> ScriptIssue:
    path: FieldPath = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        field = str(path[-1])
        parent = path[:-1]
        options = _fields_at(parent)
        hint = difflib.get_close_matches(field, options, n=1, cutoff=0.6)
        msg = f"unknown field '{field}'" + (f" (did you mean '{hint[0]}'?)" if hint else "") + (f"; expected one of: {', '.join(options)}" if options else "")
        line, col = marks.get((*parent, f"\x00key:{field}"), _locate(path, marks))
        return ScriptIssue(msg, path, line=line, column=col)
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",") if c.strip()]
        hint = difflib.get_close_matches(str(given), choices, n=1, cutoff=0.6) if isinstance(given, str) else []
        what = {"camera": "camera move", "transition": "transition"}.get(str(path[-1]) if path else "", "value")
        msg = f"unknown {what} {given!r}" + (f" (did you mean '{hint[0]}'?)" if hint else "") + f"; expected one of: {', '.join(choices)}"
    elif kind == "missing":
        msg = "required field is missing"
    elif kind == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
    else:
        msg = err["msg"][0].lower() + err["msg"][1:]
        if given is not None and not isinstance(given, (dict, list)):
            shown = repr(given)
            msg += f", got {shown if len(shown) < 60 else shown[:57] + '...'}"
    line, col = _locate(path, marks)
    return ScriptIssue(msg, path, line=line, column=col)


def _fields_at(path: FieldPath) -> list[str]:
    """Field names of the model found at ``path`` inside a Story (for suggestions)."""
    from longtake.script import schema

    model: Any = schema.Story
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, schema._Model)), None)
        if nxt is None:
            return []
        model = nxt
    return list(model.model_fields)


def build_story(data: Any, marks: Marks | None = None, *, file: str | None = None, base_dir: Path | None = None) -> Story:
    """Validate plain data as a Story, reporting every problem with its position."""
    marks = marks or {}
    if data is None:
        raise ScriptError(ScriptIssue("empty script; expected a story with a title, locations and scenes", file=file, line=1))
    if not isinstance(data, dict):
        raise ScriptError(ScriptIssue(f"expected a mapping of story fields at the top level, got {type(data).__name__}", file=file, line=1))
    context = {"base_dir": base_dir or Path(".")}
    try:
        return Story.model_validate(data, context=context)
    except ValidationError as exc:
        issues = [_issue_from_pydantic(e, marks) for e in exc.errors(include_url=False)]
        raise ScriptError([i.located(file) for i in issues]) from None
    except ScriptError as exc:  # cross-reference problems raised by Story's model validator
        raise ScriptError([i.located(file, *_locate(i.path, marks)) for i in exc.issues]) from None


def _importer(fmt: str) -> Importer:
    if fmt == "yaml":
        return parse_yaml
    if fmt == "json":
        return parse_json
    if fmt == "text":
        from longtake.script.importers.text import parse_text

        return parse_text
    if fmt == "prompts":
        from longtake.script.importers.prompts import parse_prompts

        return parse_prompts
    if fmt == "fountain":
        from longtake.script.importers.fountain import parse_fountain

        return parse_fountain
    raise ScriptError(ScriptIssue(f"unknown format '{fmt}'; expected one of: {', '.join(FORMATS)}"))


def loads_story(text: str, *, format: str = "yaml", name: str = "<script>", base_dir: Path | None = None) -> Story:
    """Parse a script held in a string."""
    parse = _importer(format)
    try:
        data, marks = parse(text)
    except ScriptError as exc:
        raise exc.located(name) from None
    return build_story(data, marks, file=name, base_dir=base_dir)


def load_story(path: str | Path, *, format: str | None = None) -> Story:
    """Read a script file. The format follows the suffix unless ``format`` names one.

    Raises :class:`ScriptError` (and nothing else) for any bad input.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise ScriptError(ScriptIssue(f"unknown format '{fmt}'; expected one of: {', '.join(FORMATS)}", file=str(path)))
    text = read_text(path)
    return loads_story(text, format=fmt, name=str(path), base_dir=path.parent)


def story_to_data(story: Story) -> dict[str, Any]:
    """Plain data for YAML/JSON output: defaults left out, paths as strings."""
    return story.model_dump(mode="json", exclude_defaults=True) | {"title": story.title}


def save_story(story: Story, path: str | Path) -> None:
    """Write YAML or JSON next to ``path`` and rename into place (never a half-written file)."""
    path = Path(path)
    data = story_to_data(story)
    if path.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif path.suffix.lower() in (".yaml", ".yml"):
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    else:
        raise ScriptError(ScriptIssue(f"cannot save a story as '{path.suffix}'; expected .yaml, .yml or .json", file=str(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
