"""Records render to markdown and parse back without loss; drops are refused precisely."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from squad.errors import RecordError
from squad.records import Draft, Record, digest, filename, parse_draft, parse_record, render, slug

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)
one_line = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
                   min_size=1, max_size=80).filter(lambda s: s.strip())
tag = st.from_regex(r"[a-z0-9][a-z0-9._/-]{0,10}", fullmatch=True)
ids = st.lists(st.integers(1, 10_000), max_size=4).map(tuple)


def _valid(build, **fields):
    try:
        return build(**fields)
    except ValueError:  # pydantic's ValidationError; the generator hit a refused value
        return None


records = st.builds(
    lambda **f: _valid(Record, **f),
    id=st.integers(1, 99_999),
    title=one_line,
    agent=one_line,
    date=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                      timezones=st.just(UTC)),
    status=st.sampled_from(["proposed", "accepted"]),
    supersedes=ids,
    tags=st.lists(tag, max_size=3).map(tuple),
    run=st.none() | st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
    inputs=ids,
    prev=st.none() | st.binary(min_size=1).map(digest),
    context=text,
    decision=text.filter(lambda s: s.strip()),
    consequences=text,
).filter(lambda r: r is not None)


@settings(max_examples=300, deadline=None)
@given(records)
def test_record_round_trip(record: Record) -> None:
    assert parse_record(render(record)) == record


@settings(max_examples=100, deadline=None)
@given(records)
def test_rendering_is_deterministic_and_named_by_id(record: Record) -> None:
    assert render(record) == render(record)
    assert filename(record).startswith(f"{record.id:04d}-")
    assert slug(record.title) in filename(record)


def test_a_section_heading_inside_text_is_refused_not_misparsed() -> None:
    with pytest.raises(ValueError, match="section heading"):
        Draft(title="t", agent="a", decision="x\n## Consequences\ny")


@pytest.mark.parametrize(("text", "fault"), [
    ("", "front matter"),
    ("title: x\n", "front matter"),
    ("---\ntitle: x\n", "not closed"),
    ("---\n: [\n---\n## Decision\nx\n", "not valid YAML"),
    ("---\n- a\n---\n## Decision\nx\n", "mapping"),
    ("---\ntitle: t\nagent: a\n---\n## Context\nx\n", "Decision"),
    ("---\ntitle: t\n---\n## Decision\nx\n", "field agent"),
    ("---\ntitle: [1]\nagent: a\n---\n## Decision\nx\n", "field title"),
    ("---\ntitle: t\nagent: a\ntags: 3\n---\n## Decision\nx\n", "field tags"),
    ("---\ntitle: t\nagent: a\nid: 4\n---\n## Decision\nx\n", "coordinator assigns"),
    ("---\ntitle: t\nagent: a\ncolour: red\n---\n## Decision\nx\n", "field colour"),
    ("---\ntitle: t\nagent: a\n---\n## Decision\nx\n## Decision\ny\n", "twice"),
    ("---\ntitle: t\nagent: a\nkind: accept\n---\n## Decision\nx\n", "target"),
    ("---\ntitle: t\nagent: a\n---\n## Decision\n\n", "field decision"),
])
def test_bad_drops_say_what_is_wrong(text: str, fault: str) -> None:
    with pytest.raises(RecordError, match=fault):
        parse_draft(text)


def test_slug_is_ascii_and_never_empty() -> None:
    assert slug("Use SQLite: yes!") == "use-sqlite-yes"
    assert slug("Café über alles") == "cafe-uber-alles"
    assert slug("日本語") == "decision"
