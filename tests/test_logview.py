"""The log view: `log` and `show` answered from it print what the long way prints, and a
damaged or stale view is noticed, never served, and rebuilt."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import drop_text, git, squad
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from squad import logview
from squad.dropbox import Inbox
from squad.ledger import Entry, Ledger
from squad.quickread import plain_table
from squad.records import Record, digest, filename, render

COMMANDS = (("log",), ("log", "--json"), ("log", "--all", "--limit", "2"),
            ("log", "--grep", "redis"), ("log", "--status", "superseded", "--json"),
            ("show", "2"), ("show", "2", "--json"), ("show", "4"), ("show", "1"),
            ("show", "99"))


def _view(repo: Path) -> Path:
    return repo / ".git" / "squad" / "log-view"


def _outputs(repo: Path, fresh: bool) -> list[tuple[int, str, str]]:
    """What every command prints; with `fresh`, the view is removed before each (the long
    way), else it is left as it is."""
    found = []
    for args in COMMANDS:
        if fresh:
            _view(repo).unlink(missing_ok=True)
        result = squad(repo, *args, check=False)
        found.append((result.returncode, result.stdout, result.stderr))
    return found


@pytest.fixture
def logged(repo: Path) -> Path:
    squad(repo, "decide", "--agent", "architect", "--title", "Use SQLite", "--decision", "x")
    Inbox(repo / "decisions" / "inbox").drop(drop_text("Cache in memory", inputs="[1]"))
    squad(repo, "ingest")
    squad(repo, "accept", "1")
    squad(repo, "supersede", "2", "--title", "Cache in Redis", "--decision", "Redis.",
          "--tag", "cache")
    return repo


def _forged(data: bytes, old: bytes, new: bytes) -> bytes:
    """The view with `old` replaced by `new` in the bodies, every hash made again: what only
    someone who writes the file on purpose can make."""
    fields = data.partition(b"\n")[0].decode().split(" ")
    key, settings = fields[3], fields[4]
    bodies = logview.View.of_bytes(data, key, settings).bodies()
    return logview.assemble([(rid, body.replace(old, new)) for rid, body in bodies], key,
                            settings)


def _layout(data: bytes) -> tuple[int, int, int]:
    """Where the chunk table, the index and the body start."""
    fields = data.partition(b"\n")[0].split(b" ")
    count, table_at, body_at = int(fields[5]), int(fields[7]), int(fields[8])
    return table_at, body_at - count * 57, body_at


def test_the_view_prints_what_the_long_way_prints(logged: Path) -> None:
    long_way = _outputs(logged, fresh=True)
    assert _view(logged).exists()
    assert _outputs(logged, fresh=False) == long_way
    assert "Cache in Redis" in long_way[0][1] and long_way[9][0] == 2
    assert "superseded by 0004" in long_way[5][1] and "input to" in long_way[8][1]
    assert git(logged, "status", "--porcelain") == ""


def test_a_sealed_view_is_what_is_served(logged: Path) -> None:
    """The checks catch accidents, not a forger with write access to .git (who could as well
    edit its hooks): a line resealed by hand is served, which shows the view is read."""
    squad(logged, "log")
    data = _view(logged).read_bytes()
    _view(logged).write_bytes(_forged(data, b'"Use SQLite"', b'"Use SQLitE"'))
    assert "Use SQLitE" in squad(logged, "log").stdout


def test_a_damaged_or_stale_view_is_never_served_and_is_rebuilt(logged: Path) -> None:
    truth = _outputs(logged, fresh=True)
    good = _view(logged).read_bytes()
    head = git(logged, "rev-parse", "HEAD:decisions").strip()
    header, _, rest = good.partition(b"\n")
    damaged = {
        "a flipped byte": good.replace(b'"Use SQLite"', b'"Use SQLitE"'),
        "a torn file": good[:-40],
        "an empty file": b"",
        "a header of another log": header.replace(head.encode(), b"0" * 40) + b"\n"
        + rest,
        "a line moved to another place": _swap_last_two(good),
        "an index pointing elsewhere": _bad_index(good),
        "an index with a wrong id": _bad_index(good, line=1, field=b"0000000009"),
        "a chunk table pointing elsewhere": _bad_table(good),
        "a line of another state of the log": _stale_line(good),
        "another version": good.replace(b"squad-log-view 3 ", b"squad-log-view 0 ", 1),
    }
    for fault, data in damaged.items():
        for args, expected in list(zip(COMMANDS, truth, strict=True))[::3]:
            _view(logged).write_bytes(data)
            result = squad(logged, *args, check=False)
            assert (result.returncode, result.stdout, result.stderr) == expected, (fault, args)
            # `log` reads every row by its offset, `show` finds one by its id in the index
            if args == (("show", "2", "--json") if "id" in fault else ("log",)):
                assert _view(logged).read_bytes() == good, fault  # rebuilt
    # stale: a new commit on the branch, and an edited squad.toml
    squad(logged, "decide", "--agent", "docs", "--title", "Fifth", "--decision", "z")
    assert "Fifth" in squad(logged, "log").stdout
    (logged / "squad.toml").write_text("[coordinator\n")
    result = squad(logged, "log", check=False)
    assert result.returncode == 2 and "squad.toml: not valid TOML" in result.stderr


def test_a_view_per_worktree(logged: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    git(logged, "worktree", "add", "-q", str(other), "-b", "other", "HEAD~1")
    assert "Cache in Redis" in squad(logged, "log").stdout
    assert "Cache in Redis" not in squad(other, "log").stdout
    assert "Cache in Redis" in squad(logged, "log").stdout
    assert _view(logged).exists()


def _swap_last_two(data: bytes) -> bytes:
    """Two body lines, each sound, swapped (offsets kept): each is out of its place."""
    *lines, last, end = data.split(b"\n")
    return b"\n".join([*lines[:-1], last, lines[-1], end])


def _bad_index(data: bytes, line: int = 0, field: bytes = b"") -> bytes:
    """The index line `line` with its offset moved (or its id replaced by `field`)."""
    at = _layout(data)[1] + line * 57
    old = data[at:at + 57]
    new = field + old[10:] if field else old[:11] + b"000000000007" + old[23:]
    return data[:at] + new + data[at + 57:]


def _bad_table(data: bytes) -> bytes:
    """The chunk table's first line naming another first id."""
    at = _layout(data)[0]
    return data[:at] + b"0000000002" + data[at + 10:]


def _stale_line(data: bytes) -> bytes:
    """Record 1's line as another state of the log had it (status proposed), in its place,
    with the seal of that line: sound on its own, but not what this view's index says."""
    old = b'"current_status":"accepted"'
    new = b'"current_status":"proposed"'
    stale = _forged(data, old, new)
    start = _layout(data)[2]
    first = data[start:].partition(b"\n")[0]
    assert old in first
    return data[:start] + stale[_layout(stale)[2]:].partition(b"\n")[0] + data[
        start + len(first):]


CELL = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=70)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(CELL, CELL, CELL, CELL, CELL), max_size=6))
def test_the_plain_table_is_what_rich_prints(rows: list[tuple[str, ...]]) -> None:
    cells = [("id", "date", "agent", "status", "title"), *rows]
    plain = plain_table(cells)
    assume(plain is not None)  # a table the hand printer leaves to rich; counted as filtered
    table = Table(*cells[0], box=None, pad_edge=False)
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    Console(file=out, highlight=False, markup=False, soft_wrap=False, width=200,
            color_system=None).print(table)
    assert plain == out.getvalue()


def test_the_plain_table_leaves_unusual_text_to_rich() -> None:
    head = ("id", "date", "agent", "status", "title")
    assert plain_table([head, ("1", "d", "a", "s", "caf\u00e9")]) is None
    assert plain_table([head, ("1", "d", "a", "s", "a :smile: b")]) is None
    assert plain_table([head, ("1", "d", "a", "s", "x" * 200)]) is None
    assert plain_table([head, ("1", "d", "a", "s", "fine: yes")]) is not None


# ---- carrying the view over a commit ----------------------------------------------------

STEP = st.tuples(st.sampled_from(["decision", "decision", "accept", "reject"]),
                 st.booleans(), st.lists(st.integers(0, 10_000), max_size=3),
                 st.integers(0, 10_000), st.booleans())


def _log(steps: list[tuple[str, bool, list[int], int, bool]]) -> Ledger:
    """A log made of `steps`: decisions (some accepted when made, some superseding or
    taking earlier ones as inputs) and accepts or rejects of earlier decisions."""
    ledger = Ledger()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for kind, flag, picks, pick, late in steps:
        decisions = [e.record.id for e in ledger.entries if e.record.kind == "decision"]
        every = [e.record.id for e in ledger.entries]
        rid = ledger.next_id
        fields: dict[str, object] = {"id": rid, "date": start + timedelta(minutes=rid),
                                     "agent": "tester", "decision": f"d{rid}"}
        if kind != "decision" and decisions:
            fields.update(kind=kind, target=decisions[pick % len(decisions)],
                          title=f"{kind} {rid}")
        else:
            fields.update(title=f"Decision {rid}", status="accepted" if flag else "proposed",
                          tags=("t",) if late else ())
            if decisions and picks:
                fields["supersedes"] = tuple(sorted({decisions[i % len(decisions)]
                                                     for i in picks[:2]}))
            if every and picks:
                fields["inputs"] = tuple(sorted({every[i % len(every)] for i in picks[1:]}))
        record = Record(**fields)  # type: ignore[arg-type]
        ledger.append(Entry(record, filename(record), digest(render(record).encode())))
    return ledger


def _blob(entry: Entry) -> str:
    return hashlib.sha1(entry.name.encode()).hexdigest()


@settings(max_examples=150, deadline=None)
@given(st.lists(STEP, max_size=25), st.lists(STEP, min_size=1, max_size=6))
def test_a_carried_view_is_the_rebuilt_view(before: list, after: list) -> None:
    """The view carried over appended records is byte for byte the view built afresh."""
    whole = _log(before + after)
    old = Ledger(whole.entries[:len(before)])
    listing = {entry.name: _blob(entry) for entry in whole.entries}
    old_view = logview.build(old, listing, "a" * 40, "none")
    added = {entry.name: listing[entry.name] for entry in whole.entries[len(before):]}
    carried = logview.extend(logview.View.of_bytes(old_view, "a" * 40, "none"), whole, added,
                             "b" * 40)
    assert carried == logview.build(whole, listing, "b" * 40, "none")


def test_a_damaged_old_view_is_not_carried() -> None:
    whole = _log([("decision", False, [], 0, False)] * 3 + [("accept", False, [], 1, False)])
    old = Ledger(whole.entries[:3])
    listing = {entry.name: _blob(entry) for entry in whole.entries}
    good = logview.build(old, listing, "a" * 40, "none")
    added = {entry.name: listing[entry.name] for entry in whole.entries[3:]}
    for damaged in (good.replace(b'"Decision 2"', b'"Decision X"'), good[:-30],
                    _swap_last_two(good), _bad_index(good)):
        with pytest.raises(logview.Damaged):
            logview.extend(logview.View.of_bytes(damaged, "a" * 40, "none"), whole, added,
                           "b" * 40)
    with pytest.raises(logview.Damaged):  # a view of another log than the one extended
        logview.extend(logview.View.of_bytes(good, "a" * 40, "none"), whole,
                       {e.name: listing[e.name] for e in whole.entries[2:]}, "b" * 40)


def test_a_commit_carries_the_view_and_other_commits_keep_it(logged: Path) -> None:
    squad(logged, "log")
    Inbox(logged / "decisions" / "inbox").drop(drop_text("Fifth", inputs="[1, 4]"))
    squad(logged, "ingest")  # rows 1 and 4 change (input to 5)
    key = git(logged, "rev-parse", "HEAD:decisions").strip()
    assert key.encode() in _view(logged).read_bytes().partition(b"\n")[0]
    squad(logged, "supersede", "4", "--title", "Sixth", "--decision", "y")
    key = git(logged, "rev-parse", "HEAD:decisions").strip()
    carried = _view(logged).read_bytes()
    assert key.encode() in carried.partition(b"\n")[0]  # fresh for the new log already
    quick = _outputs(logged, fresh=False)
    assert _view(logged).read_bytes() == carried  # served, not rebuilt
    assert quick == _outputs(logged, fresh=True)  # and what the long way prints
    assert _view(logged).read_bytes() == carried  # the long way builds the same bytes
    (logged / "app.py").write_text("print('hi')\n")  # a commit that leaves the log alone
    git(logged, "add", "app.py")
    git(logged, "commit", "-q", "-m", "code")
    assert _outputs(logged, fresh=False) == quick
    assert _view(logged).read_bytes() == carried


def test_a_damaged_view_is_not_carried_over_a_commit(logged: Path) -> None:
    squad(logged, "log")
    damaged = _view(logged).read_bytes().replace(b'"Use SQLite"', b'"Use SQLitE"')
    _view(logged).write_bytes(damaged)
    squad(logged, "decide", "--agent", "docs", "--title", "Fifth", "--decision", "z")
    assert _view(logged).read_bytes() == damaged  # left for the next `log` to rebuild
    out = squad(logged, "log").stdout
    assert "Use SQLite " in out and "Use SQLitE" not in out and "Fifth" in out
