"""The log view: `log` and `show` answered from it print what the long way prints, and a
damaged or stale view is noticed, never served, and rebuilt."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from helpers import drop_text, git, squad
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from squad.dropbox import Inbox
from squad.quickread import plain_table

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


def _reseal(line: bytes, commit: str) -> bytes:
    body = line.partition(b" ")[2]
    return hashlib.sha256(commit.encode() + b"\0" + body).hexdigest().encode() + b" " + body


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
    head = git(logged, "rev-parse", "HEAD").strip()
    lines = data.split(b"\n")
    k = next(i for i, line in enumerate(lines) if b'"Use SQLite"' in line)
    lines[k] = _reseal(lines[k].replace(b'"Use SQLite"', b'"Use SQLitE"'), head)
    _view(logged).write_bytes(b"\n".join(lines))
    assert "Use SQLitE" in squad(logged, "log").stdout


def test_a_damaged_or_stale_view_is_never_served_and_is_rebuilt(logged: Path) -> None:
    truth = _outputs(logged, fresh=True)
    good = _view(logged).read_bytes()
    head = git(logged, "rev-parse", "HEAD").strip()
    header, _, rest = good.partition(b"\n")
    damaged = {
        "a flipped byte": good.replace(b'"Use SQLite"', b'"Use SQLitE"'),
        "a torn file": good[:-40],
        "an empty file": b"",
        "a header from another commit": header.replace(head.encode(), b"0" * 40) + b"\n"
        + rest,
        "a line moved to another place": _swap_last_two(good),
        "an index pointing elsewhere": _bad_index(good),
        "an index with a wrong id": _bad_index(good, line=1, field=b"0000000009"),
        "another version": good.replace(b"squad-log-view 1 ", b"squad-log-view 0 ", 1),
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
    header, _, rest = data.partition(b"\n")
    at = line * 24
    old = rest[at:at + 24]
    new = field + old[10:] if field else old[:11] + b"000000000007\n"
    return header + b"\n" + rest[:at] + new + rest[at + 24:]


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
