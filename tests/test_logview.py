"""The log view: `log` and `show` answered from it print what the long way prints, and a
damaged or stale view is noticed, never served, and rebuilt."""

from __future__ import annotations

import hashlib
import io
import tempfile
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


def _trailer(data: bytes) -> bytes:
    """The file's last line: format, version, key, settings, count, table offset, hashes."""
    return data[:-1].rpartition(b"\n")[2]


def _forged(data: bytes, old: bytes, new: bytes) -> bytes:
    """The view with `old` replaced by `new` in the bodies, every hash made again: what only
    someone who writes the file on purpose can make."""
    fields = _trailer(data).decode().split(" ")
    key, settings = fields[3], fields[4]
    bodies = logview.View.of_bytes(data, key, settings).bodies()
    return logview.assemble([(rid, body.replace(old, new)) for rid, body in bodies], key,
                            settings)


def _layout(data: bytes) -> tuple[int, int]:
    """Where a built file's chunk table and its first block's body lines start (the first
    block's index lines start the file)."""
    fields = _trailer(data).split(b" ")
    return int(fields[6]), min(int(fields[5]), logview.CHUNK) * 57


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
    trailer = _trailer(good)
    damaged = {
        "a flipped byte": good.replace(b'"Use SQLite"', b'"Use SQLitE"'),
        "a torn file": good[:-40],
        "an empty file": b"",
        "a trailer of another log": good[:-len(trailer) - 1]
        + trailer.replace(head.encode(), b"0" * 40) + b"\n",
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
    """The last two body lines of a one-block file, each sound, swapped (offsets kept):
    each is out of its place."""
    lines = data.split(b"\n")  # ..., body, body, table line, trailer, ""
    lines[-5], lines[-4] = lines[-4], lines[-5]
    return b"\n".join(lines)


def _bad_index(data: bytes, line: int = 0, field: bytes = b"") -> bytes:
    """The index line `line` with its offset moved (or its id replaced by `field`)."""
    at = line * 57
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
    start = _layout(data)[1]
    first = data[start:].partition(b"\n")[0]
    assert old in first
    return data[:start] + stale[_layout(stale)[1]:].partition(b"\n")[0] + data[
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


PLAIN = ("decision", False, [], 0, False)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([0, 0, 0, 130, 260]), st.lists(STEP, max_size=25),
       st.lists(STEP, min_size=1, max_size=6))
def test_a_carried_view_is_the_rebuilt_view(plain: int, steps: list, after: list) -> None:
    """The view carried over appended records is byte for byte the view built afresh (the
    log often longer than a block, so that rows in several blocks change)."""
    before = [PLAIN] * plain + steps
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
    assert key.encode() in _trailer(_view(logged).read_bytes())
    squad(logged, "supersede", "4", "--title", "Sixth", "--decision", "y")
    key = git(logged, "rev-parse", "HEAD:decisions").strip()
    carried = _view(logged).read_bytes()
    assert key.encode() in _trailer(carried)  # fresh for the new log already
    quick = _outputs(logged, fresh=False)
    assert _view(logged).read_bytes() == carried  # served, not rebuilt
    assert quick == _outputs(logged, fresh=True)  # and what the long way prints
    rebuilt = _view(logged).read_bytes()
    assert len(rebuilt) < len(carried)  # the carry appended to the file it had
    settings = _trailer(carried).split(b" ")[4].decode()
    # laid out afresh, the carried file is the very bytes the long way builds
    assert logview.compact(logview.View.of_bytes(carried, key, settings)) == rebuilt
    (logged / "app.py").write_text("print('hi')\n")  # a commit that leaves the log alone
    git(logged, "add", "app.py")
    git(logged, "commit", "-q", "-m", "code")
    assert _outputs(logged, fresh=False) == quick
    assert _view(logged).read_bytes() == rebuilt


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([0, 200]), st.lists(STEP, max_size=40),
       st.lists(st.lists(STEP, min_size=1, max_size=4), min_size=1, max_size=12))
def test_carries_append_in_place_and_lay_the_file_out_afresh_in_time(
        plain: int, steps: list, commits: list) -> None:
    """Carried commit after commit on disk, the file holds the rebuilt view (laid out
    afresh, byte for byte), and its dead bytes never outweigh the live ones for long."""
    before = [PLAIN] * plain + steps
    whole = _log(before + [step for steps in commits for step in steps])
    listing = {entry.name: _blob(entry) for entry in whole.entries}
    with tempfile.TemporaryDirectory() as tmp:
        git_dir = Path(tmp)
        path = logview.view_path(git_dir)
        count = len(before)
        logview.save(path, logview.build(Ledger(whole.entries[:count]), listing, "k0",
                                         "none"))
        for n, steps in enumerate(commits, start=1):
            ledger = Ledger(whole.entries[:count + len(steps)])
            added = {e.name: listing[e.name] for e in ledger.entries[count:]}
            assert logview.carry(git_dir, f"k{n - 1}", f"k{n}", "none", ledger, added)
            count = len(ledger.entries)
            data = path.read_bytes()
            rebuilt = logview.build(ledger, listing, f"k{n}", "none")
            view = logview.View.of_bytes(data, f"k{n}", "none")
            assert logview.compact(view) == rebuilt
            assert view.rows() == logview.View.of_bytes(rebuilt, f"k{n}", "none").rows()
            assert len(data) <= 2 * len(rebuilt) + (1 << 16)


def test_a_damaged_view_is_not_carried_over_a_commit(logged: Path) -> None:
    squad(logged, "log")
    damaged = _view(logged).read_bytes().replace(b'"Use SQLite"', b'"Use SQLitE"')
    _view(logged).write_bytes(damaged)
    squad(logged, "decide", "--agent", "docs", "--title", "Fifth", "--decision", "z")
    assert _view(logged).read_bytes() == damaged  # left for the next `log` to rebuild
    out = squad(logged, "log").stdout
    assert "Use SQLite " in out and "Use SQLitE" not in out and "Fifth" in out


def test_dead_bytes_are_dropped_by_laying_the_file_out_afresh(tmp_path: Path) -> None:
    """Each commit names record 1 as an input, so its block is made again and appended
    every time: the file grows, then is laid out afresh (a new file, rebuilt bytes)."""
    steps = [("decision", False, [], 0, False)] * 300
    steps += [("decision", False, [0, 0], 0, False)] * 40  # inputs: [1]
    whole = _log(steps)
    listing = {entry.name: _blob(entry) for entry in whole.entries}
    path = logview.view_path(tmp_path)
    logview.save(path, logview.build(Ledger(whole.entries[:300]), listing, "k300", "none"))
    relaid = 0
    for count in range(301, 341):
        before = path.stat()
        ledger = Ledger(whole.entries[:count])
        added = whole.entries[count - 1]
        assert logview.carry(tmp_path, f"k{count - 1}", f"k{count}", "none", ledger,
                             {added.name: _blob(added)})
        rebuilt = logview.build(ledger, listing, f"k{count}", "none")
        if path.stat().st_ino != before.st_ino:
            relaid += 1
            assert path.read_bytes() == rebuilt
        else:
            assert path.stat().st_size > before.st_size  # appended in place
        assert path.stat().st_size <= 2 * len(rebuilt) + (1 << 16)
    assert relaid >= 1


@pytest.mark.parametrize("link", ["symlink", "hard link"])
def test_a_carry_never_writes_through_another_name(logged: Path, tmp_path: Path,
                                                    link: str) -> None:
    """A carry appends in place only to a file with no other name: a view that is a symlink
    or has a second hard link is left alone, and the bytes elsewhere are kept."""
    squad(logged, "log")
    outside = tmp_path / "elsewhere"
    if link == "symlink":
        _view(logged).rename(outside)
        _view(logged).symlink_to(outside)
    else:
        outside.hardlink_to(_view(logged))
    kept = outside.read_bytes()
    squad(logged, "decide", "--agent", "docs", "--title", "Fifth", "--decision", "z")
    assert outside.read_bytes() == kept
    assert "Fifth" in squad(logged, "log").stdout
    assert outside.read_bytes() == kept


def test_a_whole_rewrite_never_writes_through_a_planted_temporary(tmp_path: Path) -> None:
    """The caches' whole-file replace writes a fresh temporary: a symlink found at its name
    (a killed writer's leftover, or planted) is removed, never written through."""
    import os
    import threading

    target = tmp_path / "squad" / "log-cache"
    target.parent.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"not squad's")
    planted = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    planted.symlink_to(outside)
    logview.replace_whole(target, b"new cache")
    assert outside.read_bytes() == b"not squad's"
    assert target.read_bytes() == b"new cache"
    assert not os.path.lexists(planted)


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_cache_that_is_not_a_regular_file_is_no_cache(logged: Path, kind: str) -> None:
    """A folder or a FIFO where a cache goes is no cache: log and show answer the long
    way (no hang on the FIFO, no traceback on the folder), and a commit goes through."""
    import os

    expected = squad(logged, "log").stdout
    squad_dir = logged / ".git" / "squad"
    for name in ("log-view", "log-cache", "drops"):
        path = squad_dir / name
        path.unlink(missing_ok=True)
        if kind == "directory":
            path.mkdir()
        else:
            os.mkfifo(path)
    assert squad(logged, "log").stdout == expected
    assert "Cache in Redis" in squad(logged, "show", "4").stdout
    squad(logged, "decide", "--agent", "docs", "--title", "Fifth", "--decision", "z")
    assert "Fifth" in squad(logged, "log").stdout
    assert squad(logged, "verify").returncode == 0


def test_the_parse_cache_is_never_appended_through_a_symlink(logged: Path,
                                                           tmp_path: Path) -> None:
    """A parse cache that is a symlink (to a copy of itself outside) is read, but a commit
    never appends to the file it points at."""
    cache = logged / ".git" / "squad" / "log-cache"
    outside = tmp_path / "outside-cache"
    outside.write_bytes(cache.read_bytes())
    cache.unlink()
    cache.symlink_to(outside)
    kept = outside.read_bytes()
    squad(logged, "decide", "--agent", "docs", "--title", "Fifth", "--decision", "z")
    assert outside.read_bytes() == kept
    assert "Fifth" in squad(logged, "log").stdout
