"""Records render to markdown and parse back without loss; drops are refused precisely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
def test_a_record_file_is_named_by_its_id_and_title(record: Record) -> None:
    assert filename(record).startswith(f"{record.id:04d}-")
    assert slug(record.title) in filename(record)


def test_rendering_is_the_same_bytes_in_processes_with_other_hash_seeds() -> None:
    """A record's bytes are hashed into the chain and replayed by other processes: nothing in
    rendering may depend on set or dict order that the interpreter's hash seed changes."""
    batch = [Record(id=n, title=f"Décision {n} — ünïcode", agent="architect",
                    date=datetime(2026, 1, n, 9, 30, tzinfo=UTC), status="accepted",
                    supersedes=tuple(range(1, n)), inputs=tuple(range(n, 0, -1)),
                    tags=("storage", "api", "z/last", "a.first"), run=f"run-{n}",
                    prev=digest(str(n).encode()), context="Why.\n\nMore.",
                    decision=f"Do {n}.", consequences="- one\n- two")
             for n in range(1, 6)]
    script = ("import json, sys; from squad.records import Record, render; "
              "print(json.dumps([render(Record.model_validate_json(r)) "
              "for r in json.load(sys.stdin)]))")
    payload = json.dumps([record.model_dump_json() for record in batch])
    rendered = [json.loads(subprocess.run(
        [sys.executable, "-c", script], input=payload, capture_output=True, text=True,
        check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout) for seed in ("1", "2")]
    assert rendered[0] == rendered[1] == [render(record) for record in batch]


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


@settings(max_examples=200, deadline=None)
@given(records, st.sampled_from([None, "proposed", "accepted", "superseded"]), ids,
       st.sampled_from(["accept", "reject", None]))
def test_an_index_row_formatted_in_python_is_what_the_row_template_renders(
        record: Record, status: str | None, later: tuple[int, ...], event: str | None) -> None:
    from squad import ledger

    if event is not None:  # a status event: its row shows what it did, to which decision
        record = record.model_copy(update={"kind": event, "target": 1, "supersedes": ()})
    entry = ledger.Entry(record, f"{record.id // 1000:03d}/{filename(record)}", "sha256:x")
    assert ledger._plain_row(entry, status, later, None, entry.file) == \
        ledger._row(entry, status, later, None, entry.file)


def test_an_overridden_row_template_is_the_one_rendered(tmp_path) -> None:
    from squad import ledger

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "index_row.md.j2").write_text("row {{ row.id }}\n")
    record = Record(id=7, title="T", agent="a", date=datetime(2026, 1, 1, tzinfo=UTC),
                    decision="D")
    log = ledger.Ledger([ledger.Entry(record, filename(record), "sha256:x")])
    assert ledger.rows_of(log, log.entries, tmp_path) == ["row 0007"]
    assert ledger.rows_of(log, log.entries, None)[0].startswith("| [0007](0007-t.md) | T |")
