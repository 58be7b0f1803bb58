"""Decision records: frozen pydantic values and their markdown form.

A *draft* is what a writer drops into the inbox; a *record* is a draft that the coordinator
has numbered, dated and chained. Both are YAML front matter plus three body sections, rendered
from the `record.md.j2` template and parsed back without loss. Paths and commit SHAs belong to
the ledger, not to these values.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from squad import safety, templating
from squad.clock import format_instant
from squad.errors import RecordError, describe

M = TypeVar("M", bound="Draft")
SECTIONS = ("Context", "Decision", "Consequences")
# A line that is a section heading and nothing else but trailing whitespace (what `rstrip`
# takes off: `\s` is the same set of characters), found in one pass.
_HEADING_LINE = re.compile(rf"^## ({'|'.join(SECTIONS)})[^\S\n]*$", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BREAK_OR_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")  # the above, and \n
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def _one_line(value: str) -> str:
    value = value.strip()
    if _BREAK_OR_CONTROL.search(value):
        raise ValueError("must be a single line without control characters")
    problem = safety.text_problem(value, one_line=True)
    if problem:
        raise ValueError(problem)
    return value


def _text(value: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    problem = safety.text_problem(value, one_line=False)
    if problem:
        raise ValueError(problem)
    heading = _HEADING_LINE.search(value)
    if heading:
        raise ValueError(f"may not contain the section heading line {'## ' + heading[1]!r}")
    return value


Title = Annotated[str, AfterValidator(_one_line), StringConstraints(min_length=1, max_length=200)]
Agent = Annotated[str, AfterValidator(_one_line), StringConstraints(min_length=1, max_length=100)]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,39}$")]
RunId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Text = Annotated[str, AfterValidator(_text), StringConstraints(max_length=100_000)]
DecisionId = Annotated[int, Field(ge=1)]


class Draft(BaseModel):
    """What a writer drops: everything but the coordinator's id, date and chain link."""

    # defer_build: a command that only reads cached records never pays for the validators.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, defer_build=True)

    title: Title
    agent: Agent
    kind: Literal["decision", "accept", "reject"] = "decision"
    target: DecisionId | None = None
    status: Literal["proposed", "accepted"] = "proposed"
    supersedes: tuple[DecisionId, ...] = ()
    tags: tuple[Tag, ...] = ()
    run: RunId | None = None
    inputs: tuple[DecisionId, ...] = ()
    context: Text = ""
    decision: Text
    consequences: Text = ""

    @field_validator("supersedes", "tags", "inputs", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        # YAML gives lists; strict mode would refuse them for tuples.
        return tuple(value) if isinstance(value, list) else value

    @field_validator("supersedes", "inputs")
    @classmethod
    def _once_each(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        twice = sorted({ref for ref in value if value.count(ref) > 1})
        if twice:
            raise ValueError(f"lists {twice[0]} more than once")
        return value

    @field_validator("decision")
    @classmethod
    def _decision_says_something(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _target_only_for_events(self) -> Draft:
        if self.kind == "decision" and self.target is not None:
            raise ValueError("target: only accept and reject events have a target")
        if self.kind != "decision" and self.target is None:
            raise ValueError(f"target: a {self.kind} event needs the id of its target")
        return self


class Origin(BaseModel):
    """Where a renumbered record came from: its first id, and a commit that holds it there."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: DecisionId
    commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]


class Record(Draft):
    """A committed decision: numbered, dated by squad's clock and chained to its predecessor.

    `was` is set only on a record that `squad merge` renumbered; it is left out of the front
    matter otherwise, so records written before it existed render byte for byte as before.
    """

    id: DecisionId
    date: datetime
    prev: str | None = None
    was: Origin | None = None

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("must carry a time zone (UTC)")
            return value.astimezone(UTC).replace(microsecond=0)
        return value

    @field_validator("prev")
    @classmethod
    def _prev(cls, value: str | None) -> str | None:
        if value is not None and not _HASH.match(value):
            raise ValueError("must be 'sha256:' and 64 hex digits")
        return value

    @field_serializer("date")
    def _date_out(self, value: datetime) -> str:
        return format_instant(value)


# The order of keys in the front matter: stable, so records diff well.
_ORDER = ("id", "title", "agent", "date", "kind", "target", "status", "supersedes", "tags",
          "run", "inputs", "prev", "was")
_OMITTED_WHEN_UNSET = ("was",)


def front_matter(value: Draft) -> dict[str, Any]:
    data = value.model_dump(mode="json", exclude=set(SECTIONS_LOWER))
    return {key: data[key] for key in _ORDER if key in data
            and not (key in _OMITTED_WHEN_UNSET and data[key] is None)}


SECTIONS_LOWER = tuple(name.lower() for name in SECTIONS)


def render(value: Draft, root: templating.Templates = None) -> str:
    """The markdown form of a draft or record."""
    return templating.render("record.md.j2", root, front_matter=dump_front_matter(
                                 front_matter(value)),
                             context=value.context, decision=value.decision,
                             consequences=value.consequences)


def dump_front_matter(data: dict[str, Any]) -> str:
    """`data` as YAML, in exactly the bytes `yaml.safe_dump` writes (records are hashed and
    replayed byte for byte), written here when every value is in a form whose YAML is known
    (null, an integer, a date, a plain string, a one-line list of those): the coordinator
    renders every record it commits, and the YAML emitter, pure Python, cost more than the
    rest of a commit's Python work. Anything else goes through YAML itself."""
    lines = []
    for key, value in data.items():
        text = _dumped(value)
        if text is None or not _KEY.fullmatch(key):
            return _yaml_dump(data)
        lines.append(f"{key}: {text}\n")
    has_list = any(isinstance(value, list) for value in data.values())
    return "".join(lines) if has_list else _yaml_dump(data)  # scalars only: flow style


def _yaml_dump(data: dict[str, Any]) -> str:
    import yaml  # imported where used: squad's own records never need it

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=float("inf"),
                          default_flow_style=None)


def _dumped(value: Any) -> str | None:
    """How safe_dump writes `value` as a block mapping's value, or None when not known here."""
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if type(value) is str:
        if _INSTANT.fullmatch(value):
            return f"'{value}'"  # YAML would read it as a timestamp: quoted
        return value if _block_plain(value) else None
    if type(value) is list:
        items = [str(item) if type(item) is int else
                 item if type(item) is str and _WORD.fullmatch(item) and
                 item.lower() not in _NOT_STRINGS else None for item in value]
        if any(item is None for item in items):
            return None
        return "[" + ", ".join(items) + "]"  # type: ignore[arg-type]
    return None


def _block_plain(text: str) -> bool:
    """True when YAML writes and reads `text` as a plain scalar after `key: `."""
    return bool((_SAFE_PLAIN.fullmatch(text) or _TEXT.fullmatch(text) or _RUN_ID.fullmatch(text))
                and text.lower() not in _NOT_STRINGS)


_KEY = re.compile(r"[a-z_]+")
_INT = re.compile(r"0|[1-9][0-9]{0,17}")
# Inside single quotes YAML takes every character as it is but for '' (one quote); a line
# break folds, and some characters it refuses or may treat apart (controls, C1, NEL, the
# line and paragraph separators, surrogates, a BOM, U+FFFE/F): those are left to YAML.
_QUOTED_BODY = r"(?:[^'\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]|'')*"
_QUOTED = re.compile(f"'({_QUOTED_BODY})'")
# A plain (unquoted) value on a line of its own, which YAML can only read as that very string:
# a letter first (numbers, dates, floats and YAML's indicators start otherwise), printable
# ASCII after it; `_plain` also refuses ': ' and ' #' (which end it), a trailing ':' or
# space, and the words YAML reads as booleans or null.
_PLAIN = re.compile(r"[A-Za-z][ -~]*")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")  # a list item: no space, no colon
_RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")  # squad's run ids: a string to YAML
_DQUOTED = re.compile(r'"[ !#-\[\]-~]*"')  # double-quoted printable ASCII, no escape: as is
# What the writer may leave plain: words of safe characters joined by one space or one colon
# (so never ': ' or ' #'), a letter first, nothing that ends a flow item.
_SAFE_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*(?:[ :][A-Za-z0-9._/-]+)*")
_NOT_STRINGS = frozenset({"yes", "no", "true", "false", "on", "off", "null", "y", "n"})
# Words of text joined by one space: a letter first, no ':' and no '#' (so never ': ' nor
# ' #'), no flow indicator that matters outside a flow collection: a title as YAML writes it.
_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9_.,/'()-]*(?: [A-Za-z0-9_.,/'()-]+)*")
_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def plain_front_matter(head: str) -> dict[str, Any] | None:
    """The front matter as YAML reads it, when every line is in the simple form squad itself
    writes (`key: value` with null, an integer, a quoted or plain string, or a one-line list
    of those): about ten times faster than the YAML parser, which `verify` would otherwise
    spend most of its time in. None when any line is in another form: YAML reads it then."""
    shaped = squad_front_matter(head)
    if shaped is not None:
        return shaped
    meta: dict[str, Any] = {}
    for line in head.split("\n"):
        if not line:
            continue
        key, sep, text = line.partition(": ")  # a key holds no ": ", so this is the first
        if not sep or not text or not _KEY.fullmatch(key):
            return None
        value = _scalar(text)
        if value is _NOT_SIMPLE:
            if not (text.startswith("[") and text.endswith("]")):
                return None
            items = text[1:-1].split(", ") if text != "[]" else []
            if not all(_INT.fullmatch(item) or _DQUOTED.fullmatch(item) or
                       (_WORD.fullmatch(item) and item.lower() not in _NOT_STRINGS)
                       for item in items):
                return None
            value = [int(item) if _INT.fullmatch(item) else
                     item[1:-1] if item.startswith('"') else item for item in items]
        meta[key] = value
    return meta or None  # nothing at all: YAML's own verdict (not a mapping)


_NOT_SIMPLE: Any = object()


def _scalar(text: str) -> Any:
    """null, an integer, a quoted or a plain string, told apart by the first character
    (the forms cannot share one), or _NOT_SIMPLE."""
    first = text[0]
    if first == "'":
        quoted = _QUOTED.fullmatch(text)
        return quoted.group(1).replace("''", "'") if quoted else _NOT_SIMPLE
    if first == '"':
        return text[1:-1] if _DQUOTED.fullmatch(text) else _NOT_SIMPLE
    if "0" <= first <= "9":
        if _INT.fullmatch(text):
            return int(text)
        return text if _RUN_ID.fullmatch(text) else _NOT_SIMPLE
    if text == "null":
        return None
    return _plain(text) if _PLAIN.fullmatch(text) else _NOT_SIMPLE


def _plain(text: str) -> Any:
    """A value that matched `_PLAIN` (or _RUN_ID) as YAML reads it, or _NOT_SIMPLE."""
    if (": " in text or " #" in text or text[-1] in ": "
            or text.lower() in _NOT_STRINGS):
        return _NOT_SIMPLE
    return text


def _string(text: str) -> Any:
    """A value the shape below matched as a quoted string or a plain one."""
    if text[0] == "'":
        return text[1:-1].replace("''", "'")
    return _plain(text)


_STR = f"'{_QUOTED_BODY}'|{_PLAIN.pattern}"
_INTS = rf"\[((?:{_INT.pattern})(?:, (?:{_INT.pattern}))*)?\]"
# The front matter exactly as squad renders a record (every key, in its order), read with
# one match: most of the cost of reading a record back is otherwise spent line by line.
_SHAPE = re.compile(
    rf"id: ({_INT.pattern})\n"
    rf"title: ({_STR})\n"
    rf"agent: ({_STR})\n"
    rf"date: '({_INSTANT.pattern})'\n"
    r"kind: (decision|accept|reject)\n"
    rf"target: (null|{_INT.pattern})\n"
    r"status: (proposed|accepted)\n"
    rf"supersedes: {_INTS}\n"
    rf"tags: \[((?:{_WORD.pattern})(?:, {_WORD.pattern})*)?\]\n"
    rf"run: (null|{_RUN_ID.pattern}|{_STR})\n"
    rf"inputs: {_INTS}\n"
    r"prev: (null|sha256:[0-9a-f]{64})\n"
    rf"(?:was: \{{id: ({_INT.pattern}), commit: ([0-9a-f]{{40}}|'[0-9a-f]{{40}}')\}}\n)?")
_NUMBER_LIKE = re.compile(r"[0-9]+|0b[01]+")  # hex digits that YAML would read as a number


def squad_front_matter(head: str) -> dict[str, Any] | None:
    """The front matter as YAML reads it when it is exactly in the shape squad renders a
    record's (see `_SHAPE`), else None; `plain_front_matter` tries this first."""
    match = _SHAPE.fullmatch(head)
    if match is None:
        return None
    (number, title, agent, date, kind, target, status, supersedes, tags, run, inputs,
     prev, was_id, was_commit) = match.groups()
    title, agent = _string(title), _string(agent)
    words = tags.split(", ") if tags else []
    if run == "null":
        run = None
    elif not _RUN_ID.fullmatch(run):
        run = _string(run)
    if (title is _NOT_SIMPLE or agent is _NOT_SIMPLE or run is _NOT_SIMPLE
            or any(word.lower() in _NOT_STRINGS for word in words)
            or (was_commit is not None and _NUMBER_LIKE.fullmatch(was_commit))):
        return None
    meta = {"id": int(number), "title": title, "agent": agent, "date": date, "kind": kind,
            "target": None if target == "null" else int(target), "status": status,
            "supersedes": [int(i) for i in supersedes.split(", ")] if supersedes else [],
            "tags": words, "run": run,
            "inputs": [int(i) for i in inputs.split(", ")] if inputs else [],
            "prev": None if prev == "null" else prev}
    if was_id is not None:  # a record `squad merge` renumbered
        meta["was"] = {"id": int(was_id), "commit": was_commit.strip("'")}
    return meta


def split(text: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Split markdown into front matter and sections; raise RecordError saying what is wrong."""
    text = text.replace("\r\n", "\n")
    if not text.startswith("---\n"):
        raise RecordError("does not start with a '---' front matter line")
    end = text.find("\n---\n", 3)
    if end < 0:
        raise RecordError("front matter is not closed by a '---' line")
    meta = plain_front_matter(text[4 : end + 1])
    if meta is None:
        meta = _yaml(text[4 : end + 1])
    body = text[end + 5 :]
    headings = list(_HEADING_LINE.finditer(body))
    if body[: headings[0].start() if headings else len(body)].strip():
        raise RecordError("text before the first '## Context' section")
    sections: dict[str, str] = {}
    for number, heading in enumerate(headings):
        name = heading.group(1).lower()
        if name in sections:
            raise RecordError(f"section '## {heading.group(1)}' appears twice")
        stop = headings[number + 1].start() if number + 1 < len(headings) else len(body)
        sections[name] = body[heading.end() + 1 : stop].strip()
    if "decision" not in sections:
        raise RecordError("no '## Decision' section")
    return meta, sections


def _yaml(head: str) -> dict[str, Any]:
    import yaml  # imported where used: squad's own front matter never needs it

    try:
        meta = yaml.load(head, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        raise RecordError(f"front matter is not valid YAML: {_first_line(exc)}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # e.g. 2024-02-30
        raise RecordError(f"front matter holds an impossible value: {_first_line(exc)}") \
            from None
    if not isinstance(meta, dict):
        raise RecordError("front matter is not a YAML mapping")
    return meta


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def _build(model: type[M], text: str) -> M:
    meta, sections = split(text)
    clash = set(meta) & set(SECTIONS_LOWER)
    if clash:
        raise RecordError(f"front matter may not set body section {sorted(clash)[0]!r}")
    if model is Draft:
        assigned = sorted({"id", "date", "prev", "was"} & set(meta))
        if assigned:
            raise RecordError(
                f"a drop may not set {', '.join(assigned)}: the coordinator assigns them")
    try:
        return model.model_validate({**meta, **sections})
    except ValidationError as exc:
        raise RecordError(describe(exc)) from None


def parse_draft(text: str) -> Draft:
    return _build(Draft, text)


def parse_record(text: str) -> Record:
    return _build(Record, text)


def digest(data: bytes) -> str:
    """The chain hash of a record's file bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def slug(title: str) -> str:
    ascii_title = title if title.isascii() else \
        unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return words[:50].rstrip("-") or "decision"


def filename(record: Record) -> str:
    return f"{record.id:04d}-{slug(record.title)}.md"


RECORD_NAME = re.compile(r"^(\d{4,})-[a-z0-9-]+\.md$")
