"""squad's fast reading of its own front matter gives exactly what YAML gives, or steps aside."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from squad import records, safety
from squad.errors import RecordError
from squad.records import (
    Origin,
    Record,
    parse_record,
    plain_front_matter,
    render,
    split,
    squad_front_matter,
)

PIECES = ["null", "0", "7", "012", "1e3", "0x1f", "1:20", "-1", "yes", "No", "on", "off", "y",
          "true", "~", "'it''s'", "''", "'a: b'", "Use SQLite", "sha256:abc", "a: b", "a #b",
          "[]", "[a, b]", "[1, 2]", "[a, 'b']", "[yes]", "[a:b]", "[x y]", "{id: 1}", ".inf",
          "2026-01-01", "'2026-01-01T00:00:00Z'", "-x", "x-", "&a", "*a", "!x", "%x", "@x",
          "`x", "|", ">", "a,b", "[a,b]", "[ a ]", "x ", " x", "x  y", "é", "x'y", "N", "Null"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["id", "title", "tags", "run", "a_b", "Key", "x y"]),
                          st.sampled_from(PIECES) | st.text(max_size=12)), max_size=6))
def test_the_fast_reading_agrees_with_yaml(lines: list[tuple[str, str]]) -> None:
    head = "".join(f"{key}: {value}\n" for key, value in lines)
    fast = plain_front_matter(head)
    if fast is None:
        return  # YAML reads it
    assert fast == yaml.safe_load(head)


def test_squads_own_front_matter_takes_the_fast_way() -> None:
    head = ("id: 5\ntitle: 'Decision 5: use option 5'\nagent: architect\n"
            "date: '2026-01-01T00:00:05Z'\nkind: decision\ntarget: null\nstatus: proposed\n"
            "supersedes: [3]\ntags: [bench, area-2]\nrun: null\ninputs: []\n"
            "prev: sha256:4c4c75dbcc58b269007109e3010114d16865b783286f28fb9dfdcec4596ee26f\n")
    assert plain_front_matter(head) == yaml.safe_load(head)
    assert plain_front_matter(head + "was: {id: 2, commit: abc}\n") is None


# ---- the exact shape squad renders (`squad_front_matter`), read with one match ----------

def _head(record: Record) -> str:
    text = render(record)
    return text[4:text.index("\n---\n", 3) + 1]


def _yaml_reads(head: str) -> list[object]:
    """What each of PyYAML's loaders reads (the C one is what squad uses); they differ on
    some odd input, where a fast reading must step aside."""
    found = []
    for loader in (yaml.CSafeLoader, yaml.SafeLoader):
        try:
            found.append(yaml.load(head, Loader=loader))
        except yaml.YAMLError:
            found.append(YAML_ERROR)
    return found


YAML_ERROR = object()
ONE_LINE = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30) | st.sampled_from(
    ["Use SQLite", "yes", "No", "null", "a: b", "a #b", "C#", "a:b", "x:", "x ", "[x", "{y}",
     "it's", "'q'", "a, b; c", "-x", "é", "~", "1.5", "2026-01-01", "x\u0085y", "x\x81y",
     "\ufeffx", "x\ty", "x  y", "%x", "@x", "a - b", "ends with -", "a ? b"])
RUN = st.sampled_from([None, "20260101-120000-abc123", "run.1", "1.5", "r-1", "2026-01-01",
                       "12", "x"])
ORIGIN = st.none() | st.builds(
    Origin, id=st.integers(1, 10**6),
    commit=st.from_regex(r"[0-9a-f]{40}", fullmatch=True) | st.sampled_from(
        ["1" * 40, "0b" + "01" * 19, "0" * 40, "1e" + "0" * 38]))
REF = st.lists(st.integers(1, 10**6), max_size=3, unique=True).map(tuple)
TAGS = st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,8}", fullmatch=True),
                max_size=3).map(tuple)


@st.composite
def any_record(draw: st.DrawFn) -> Record:
    kind = draw(st.sampled_from(["decision", "accept", "reject"]))
    try:
        return Record(
            id=draw(st.integers(1, 10**6)), title=draw(ONE_LINE), agent=draw(ONE_LINE),
            date=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**9))),
            kind=kind, target=None if kind == "decision" else draw(st.integers(1, 10**6)),
            status=draw(st.sampled_from(["proposed", "accepted"])), supersedes=draw(REF),
            tags=draw(TAGS), run=draw(RUN), inputs=draw(REF), decision="d",
            prev=draw(st.sampled_from([None, "sha256:" + "ab" * 32])), was=draw(ORIGIN))
    except ValidationError:
        assume(False)
        raise


@settings(max_examples=400, deadline=None)
@given(any_record())
def test_a_rendered_record_reads_as_yaml_reads_it(record: Record) -> None:
    head = _head(record)
    fast = squad_front_matter(head)
    if fast is not None:
        assert _yaml_reads(head) == [fast, fast]


@settings(max_examples=400, deadline=None)
@given(any_record(), st.sampled_from(["title", "agent", "run", "tags", "date", "id", "prev"]),
       ONE_LINE | st.sampled_from(PIECES))
def test_an_edited_line_reads_as_yaml_reads_it_or_goes_to_yaml(
        record: Record, key: str, value: str) -> None:
    """Whatever a hand puts on a line, the fast readings give YAML's result or step aside
    (and so a malformed record fails exactly as YAML and the validators make it fail)."""
    lines = _head(record).split("\n")
    head = "\n".join(f"{key}: {value}" if line.startswith(f"{key}: ") else line
                     for line in lines)
    expected = _yaml_reads(head)
    for fast in (squad_front_matter(head), plain_front_matter(head)):
        if fast is not None:
            assert expected == [fast, fast]


def test_what_squad_writes_takes_the_one_match_way() -> None:
    """Titles as squad's own log has them (commas, semicolons, apostrophes, ': ' quoted)
    and run ids: the shape reads them, and a renumbered record's origin (`was`)."""
    for title in ("Status changes are records of their own, folded from the log",
                  "squad merge joins logs; the trunk keeps its ids", "jinja2's sandbox",
                  "Decision 5: use option 5", "it's 'quoted'", "Use C# [or] {not}"):
        record = Record(id=3, title=title, agent="architect",
                        date=datetime(2026, 1, 1, tzinfo=UTC), tags=("a", "b-2"),
                        run="20260101-120000-abc123", supersedes=(1,), inputs=(1, 2),
                        decision="d", prev="sha256:" + "0" * 64)
        head = _head(record)
        assert squad_front_matter(head) == yaml.load(head, Loader=yaml.CSafeLoader)
        assert squad_front_matter(head) is not None, head
        for commit in ("a" * 40, "1" * 40, "0b" + "01" * 19, "0" * 39 + "f"):
            moved = _head(record.model_copy(update={"was": Origin(id=2, commit=commit)}))
            fast = squad_front_matter(moved)
            assert fast == yaml.load(moved, Loader=yaml.CSafeLoader)
            assert fast is not None or commit == "0b" + "01" * 19  # that one YAML reads as 0


@pytest.mark.parametrize("line", [
    "title: 'x\x81y'", "title: x\x85y", "title: 'a\u2028b'", "title: yes", "title: Null",
    "title: a: b", "title: a #b", "title: x:", "title: 'x' ", "title: \"x\"", "title: x ",
    "agent: ~", "run: 20260101-120000-ABC123", "run: 1.5", "tags: [yes]", "tags: [2fa]",
    "date: 2026-01-01T00:00:00Z", "prev: sha256:XYZ", "id: 012", "kind: Decision"])
def test_anything_unusual_is_refused_by_the_shape(line: str) -> None:
    """Each of these is left to YAML (which reads it otherwise, or refuses it)."""
    record = Record(id=3, title="t", agent="a", date=datetime(2026, 1, 1, tzinfo=UTC),
                    decision="d")
    key = line.split(":", 1)[0]
    head = "\n".join(line if old.startswith(f"{key}: ") else old
                     for old in _head(record).split("\n"))
    assert line in head
    assert squad_front_matter(head) is None


def test_a_malformed_title_fails_as_before() -> None:
    """A C1 control character inside quotes: YAML refuses the front matter, and so does
    squad (the fast readings step aside rather than pass it to the validators)."""
    text = render(Record(id=1, title="t", agent="a", date=datetime(2026, 1, 1, tzinfo=UTC),
                         decision="d")).replace("title: t\n", "title: 'x\x81y'\n")
    with pytest.raises(RecordError, match="front matter is not valid YAML"):
        parse_record(text)


# ---- the body's sections, found with one pass of a pattern --------------------------------

def _sections_line_by_line(body: str) -> dict[str, str] | str:
    """The reading `split` had before it matched heading lines with a pattern: the oracle."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in body.split("\n"):
        heading = line.rstrip()
        if heading in {"## Context", "## Decision", "## Consequences"}:
            name = heading[3:].lower()
            if name in sections:
                return f"section '## {heading[3:]}' appears twice"
            current = sections[name] = []
        elif current is not None:
            current.append(line)
        elif line.strip():
            return "text before the first '## Context' section"
    if "decision" not in sections:
        return "no '## Decision' section"
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


BODY_PIECES = st.sampled_from(
    ["## Context", "## Decision", "## Consequences", "## Decision  ", "## Decision\t",
     "## Decision\x85", "## Decision\u2028", "## Decision\xa0", "## Decision\r", " ## Decision",
     "## decision", "## Decisions", "### Decision", "## Context x", "", " ", "\t", "text",
     "\u3000", "\x1c", "a\rb", "## Decision\x0c"])


@settings(max_examples=500, deadline=None)
@given(st.lists(BODY_PIECES | st.text(max_size=8), max_size=10))
def test_sections_are_found_as_line_by_line(lines: list[str]) -> None:
    body = "\n".join(lines)
    text = "---\nid: 1\n---\n" + body
    expected = _sections_line_by_line(body.replace("\r\n", "\n"))  # split reads CRLF as LF
    try:
        _, sections = split(text)
    except RecordError as exc:
        assert exc.message == expected
    else:
        assert sections == expected


def _text_line_by_line(value: str) -> str:
    """The check of a section's text as it was before the pattern: the oracle."""
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", value):
        raise ValueError("contains control characters")
    problem = safety.text_problem(value, one_line=False)
    if problem:
        raise ValueError(problem)
    for line in value.split("\n"):
        if line.rstrip() in {"## Context", "## Decision", "## Consequences"}:
            raise ValueError(f"may not contain the section heading line {line.rstrip()!r}")
    return value


@settings(max_examples=300, deadline=None)
@given(st.lists(BODY_PIECES | st.text(max_size=8), max_size=6))
def test_a_heading_inside_a_section_is_refused_as_line_by_line(lines: list[str]) -> None:
    """A section's text may not hold a heading line: found by the pattern as by the lines."""
    value = "\n".join(lines)
    try:
        expected = _text_line_by_line(value)
    except ValueError as exc:
        with pytest.raises(ValueError) as raised:
            records._text(value)
        assert str(raised.value) == str(exc)
    else:
        assert records._text(value) == expected


@pytest.mark.parametrize("char", ["\r", "\n", "\x85", "\u2028", "\u2029", "\x07", "\x1f",
                                  "\x7f", "\x00"])
def test_a_title_with_a_break_or_control_is_refused(char: str) -> None:
    with pytest.raises(ValidationError, match="must be a single line without control"):
        Record(id=1, title=f"a{char}b", agent="a", date=datetime(2026, 1, 1, tzinfo=UTC),
               decision="d")


def test_a_title_may_hold_a_tab() -> None:
    record = Record(id=1, title="a\tb", agent="a", date=datetime(2026, 1, 1, tzinfo=UTC),
                    decision="d")
    assert record.title == "a\tb"


@pytest.mark.parametrize("commit", ["1" * 40, "0b" + "01" * 19, "0" * 40, "ab" * 20,
                                    "'" + "1" * 40 + "'", "0" * 39 + "e"])
def test_a_hand_written_origin_reads_as_yaml_reads_it(commit: str) -> None:
    """Written by hand without the quotes squad's renderer adds, some hex reads as a number."""
    record = Record(id=3, title="t", agent="a", date=datetime(2026, 1, 1, tzinfo=UTC),
                    decision="d")
    head = _head(record) + f"was: {{id: 2, commit: {commit}}}\n"
    fast = squad_front_matter(head)
    assert fast is None or [fast, fast] == _yaml_reads(head)
    assert (fast is None) == (not isinstance(yaml.safe_load(head)["was"]["commit"], str))
