"""The verified point: a checked log's facts, keyed by its tree id, taken only whole and
only for that tree; the cache entries it vouches for are exactly the ones checked."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers import decide_once, drop_text, git, squad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_server import ScriptedServer

from squad import checkpoint, layout, logcache
from squad.checkpoint import Point
from squad.dropbox import Inbox
from squad.ledger import Ledger, render_index
from squad.logcache import HEADER, cache_path
from squad.workspace import DECISIONS, Workspace


def _ingest(repo: Path, titles: list[str]) -> None:
    inbox = Inbox(repo / "decisions" / "inbox")
    for title in titles:
        inbox.drop(drop_text(title))
    squad(repo, "ingest")


def _parsed(ws: Workspace) -> Ledger:
    """The log parsed straight from git, no cache involved."""
    listing = layout.records(layout.listing(ws.repo))
    return Ledger.from_blobs({name: ws.repo.blob(sha) for name, sha in listing.items()})


def _tree(ws: Workspace) -> str:
    tree = ws.repo.tree_sha(DECISIONS, ws.repo.head())
    assert tree is not None
    return tree


def test_the_coordinator_leaves_the_point_of_the_log_it_committed(repo: Path) -> None:
    _ingest(repo, ["Use SQLite", "Cache in memory"])
    squad(repo, "accept", "1")
    ws = Workspace.open(repo)
    point = checkpoint.read(ws.repo, _tree(ws))
    assert point is not None and str(checkpoint.path_of(ws.repo)).startswith(str(repo / ".git"))
    assert point.files == layout.listing(ws.repo)  # the pages and the accept included
    records = layout.records(point.files)
    assert set(point.checks) == set(records.values())
    found = ws.checked()
    assert found.checks == point.checks and found.ledger.entries == _parsed(ws).entries
    ws.repo.close()
    assert git(repo, "status", "--porcelain") == ""


def test_a_run_leaves_the_point_of_the_log_it_committed(team: Path,
                                                        server: ScriptedServer) -> None:
    """Two rounds of two agents: each round's records join the point its coordinator loaded
    on, so the next command takes the log from the cache entries that point names."""
    server.responder = decide_once
    squad(team, "run", "Add rate limiting", "--agents", "architect,tester", "--rounds", "2",
          env={"OPENAI_BASE_URL": server.base_url})
    ws = Workspace.open(team)
    point = checkpoint.read(ws.repo, _tree(ws))
    assert point is not None and point.files == layout.listing(ws.repo)
    found = ws.checked()
    assert found.checks == point.checks and len(found.ledger.entries) >= 2
    assert found.ledger.entries == _parsed(ws).entries
    ws.repo.close()


def test_a_point_is_taken_only_whole_and_only_for_its_tree(repo: Path) -> None:
    _ingest(repo, ["Use SQLite", "Cache in memory", "Ship on Fridays"])
    ws = Workspace.open(repo)
    tree, path = _tree(ws), checkpoint.path_of(ws.repo)
    point = checkpoint.read(ws.repo, tree)
    assert point is not None
    # A sound point for this tree is what the load stands on: one without record 1 ...
    first = next(name for name in point.files if name.endswith("-use-sqlite.md"))
    checkpoint.write(ws.repo, Point(tree, {k: v for k, v in point.files.items() if k != first},
                                    point.checks))
    assert [e.record.id for e in ws.checked().ledger.entries] == [2, 3]
    crafted = path.read_bytes()
    # ... but not for another tree, nor damaged, nor of another squad version.
    other = git(repo, "rev-parse", "HEAD~1:decisions").strip()
    for bad in (crafted.replace(tree.encode(), other.encode()),
                crafted.replace(b"-in-memory.md", b"-in-memorz.md"),  # a flipped bit
                crafted.replace(b"squad-checked 3 ", b"squad-checked 2 ")):
        path.write_bytes(bad)
        assert checkpoint.read(ws.repo, tree) is None
        assert len(ws.checked().ledger.entries) == 3
    path.write_bytes(b"")
    found = ws.checked()  # the full check puts a sound point back
    assert found.ledger.entries == _parsed(ws).entries
    assert checkpoint.read(ws.repo, tree) == Point(tree, found.files, found.checks or {})
    ws.repo.close()


def test_a_cache_entry_changed_since_the_check_is_not_taken(repo: Path) -> None:
    _ingest(repo, ["Use SQLite", "Cache in memory", "Ship on Fridays"])
    path = cache_path(repo / ".git")
    ws = Workspace.open(repo)
    assert checkpoint.read(ws.repo, _tree(ws)) is not None
    # A forger who read logcache.py rewrites record 1's entry with a sound checksum.
    data, parts = path.read_bytes()[len(HEADER):], [HEADER]
    while data:
        line, _, data = data.partition(b"\n")
        blob, _, size = line.decode().split(" ")
        payload, data = data[:int(size)], data[int(size) + 1:]
        payload = payload.replace(b"Use SQLite", b"Use Oracle")
        check = hashlib.sha256(blob.encode() + payload).hexdigest()
        parts.append(b"%s %s %d\n%s\n" % (blob.encode(), check.encode(), len(payload), payload))
    path.write_bytes(b"".join(parts))
    # Not the entry the point vouched for: the log is checked in full, the forged entry
    # (whose title does not give its file name) is parsed again from git and replaced.
    found = ws.checked()
    assert found.ledger.entries == _parsed(ws).entries
    assert b"Use Oracle" not in path.read_bytes()
    assert checkpoint.read(ws.repo, _tree(ws)) == Point(_tree(ws), found.files,
                                                        found.checks or {})
    assert ws.checked().ledger.entries == _parsed(ws).entries  # through the point
    ws.repo.close()
    _ingest(repo, ["Fourth"])
    page = (repo / "decisions" / "000" / "README.md").read_text()
    assert "Use SQLite" in page and "Use Oracle" not in page
    assert squad(repo, "verify").returncode == 0
    shown = json.loads(squad(repo, "show", "1", "--json").stdout)
    assert shown["title"] == "Use SQLite"


def test_verify_neither_reads_nor_writes_the_point(repo: Path) -> None:
    _ingest(repo, ["Use SQLite", "Cache in memory"])
    path = checkpoint.path_of(Workspace.open(repo).repo)
    path.write_bytes(b"not a point\n")
    assert squad(repo, "verify").stdout.strip() == "ok: 2 records verified"
    assert path.read_bytes() == b"not a point\n"
    path.unlink()
    assert squad(repo, "verify").returncode == 0
    assert not path.exists()


@pytest.mark.slow
def test_a_tree_changed_outside_squad_renders_only_pages_no_check_vouched(repo: Path) -> None:
    """1,001 records fill folders 000 and 001. After a reset (a tree no point was written
    for), the entries the point on file vouched for under the same paths need no page
    rendered again; an entry changed since does, and a forged one is caught there."""
    _ingest(repo, [f"Record {n}" for n in range(1, 1002)])
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    ws = Workspace.open(repo)
    assert checkpoint.read(ws.repo, _tree(ws)) is None
    records = layout.records(layout.listing(ws.repo))
    checks: dict[str, str] = {}
    logcache.load(ws.repo, records, parse_newest=True, checks=checks)
    assert ws._unvouched(records, checks) == set()  # only the summary is rendered
    # A forger rewrites record 5's entry (same slug, so it fits its file name).
    path, parts = cache_path(repo / ".git"), [HEADER]
    data = path.read_bytes()[len(HEADER):]
    while data:
        line, _, data = data.partition(b"\n")
        blob, _, size = line.decode().split(" ")
        payload, data = data[:int(size)], data[int(size) + 1:]
        payload = payload.replace(b'"Record 5"', b'"RECORD 5"')
        check = hashlib.sha256(blob.encode() + payload).hexdigest()
        parts.append(b"%s %s %d\n%s\n" % (blob.encode(), check.encode(), len(payload), payload))
    path.write_bytes(b"".join(parts))
    checks = {}
    logcache.load(ws.repo, records, parse_newest=True, checks=checks)
    assert ws._unvouched(records, checks) == {"000"}
    found = ws.checked()  # folder 000's page shows the title the entry contradicts
    assert found.checks is None and found.ledger.get(5).record.title == "Record 5"
    ws.repo.close()


def _lines(path: Path) -> list[bytes]:
    """The appended lines after the base (header, body)."""
    data = path.read_bytes()
    header, _, rest = data.partition(b"\n")
    size = int(header.split(b" ")[4])
    return rest[size + 1:].split(b"\n")[:-1]


def test_each_session_appends_one_line_of_what_it_changed(repo: Path) -> None:
    """The second and third sessions add one line each, holding their records and pages
    only; the point read back is the full check's, for the last line's tree only."""
    _ingest(repo, ["Use SQLite", "Cache in memory"])
    ws = Workspace.open(repo)
    path = checkpoint.path_of(ws.repo)
    base = path.read_bytes()
    ws.repo.close()
    _ingest(repo, ["Ship on Fridays"])
    _ingest(repo, ["Fourth", "Fifth"])
    data = path.read_bytes()
    assert data.startswith(base)  # the base is never written over
    lines = _lines(path)
    assert len(lines) == 2
    trees = [git(repo, "rev-parse", f"HEAD~{n}:decisions").strip() for n in (2, 0)]
    assert [line.split(b" ")[0].decode() for line in lines] == trees
    delta = json.loads(lines[1].split(b" ", 2)[2])
    assert len(delta["checks"]) == 2  # the two records committed, nothing older
    assert {name for name in delta["files"] if layout.is_record(name)} \
        == {name for name in layout.listing(Workspace.open(repo).repo)
            if name.endswith(("-fourth.md", "-fifth.md"))}
    ws = Workspace.open(repo)
    tree = _tree(ws)
    point = checkpoint.read(ws.repo, tree)
    assert point is not None and point.files == layout.listing(ws.repo)
    for earlier in (trees[0], git(repo, "rev-parse", "HEAD~3:decisions").strip()):
        assert checkpoint.read(ws.repo, earlier) is None  # believed for the last line only
    path.unlink()
    found = ws.checked()  # a full check gives the very point the lines made
    assert point == Point(tree, found.files, found.checks or {})
    ws.repo.close()


def test_a_damaged_torn_or_spliced_file_is_never_believed(repo: Path) -> None:
    _ingest(repo, ["Use SQLite"])
    _ingest(repo, ["Cache in memory"])
    _ingest(repo, ["Ship on Fridays"])
    ws = Workspace.open(repo)
    tree, path = _tree(ws), checkpoint.path_of(ws.repo)
    before = git(repo, "rev-parse", "HEAD~1:decisions").strip()
    sound = path.read_bytes()
    last = sound.rstrip(b"\n").rpartition(b"\n")[2]
    assert checkpoint.read(ws.repo, tree) is not None and len(_lines(path)) == 2
    # A torn last line is left out: the point stands for the tree of the line before.
    path.write_bytes(sound[:-len(last) // 2])
    assert checkpoint.read(ws.repo, tree) is None
    torn = checkpoint.read(ws.repo, before)
    parent = git(repo, "rev-parse", "HEAD~1").strip()
    assert torn is not None and torn.files == layout.listing(ws.repo, parent)
    bad = [sound.replace(b'"files":{', b'"files":{"x":"y",', 1),  # a base damaged
           sound[:-len(last) - 2].rpartition(b"\n")[0] + b"\n" + last + b"\n",
           sound[:100] + sound[101:],  # a byte dropped from the base
           sound.replace(last, last.replace(b'"checks":{', b'"checks":{"a":"b",')),
           sound.replace(last, last[:41] + last[41:105].upper() + last[105:])]
    for n, damaged in enumerate(bad):  # the middle line dropped (a splice); a line changed
        path.write_bytes(damaged)
        assert (n, checkpoint.read_any(ws.repo)) == (n, None)
        assert ws.checked().ledger.entries == _parsed(ws).entries
    assert checkpoint.read(ws.repo, tree) is not None  # the full check put it back whole
    assert _lines(path) == []
    ws.repo.close()


def test_an_append_never_follows_a_whole_rewrite_by_another_command(repo: Path) -> None:
    """The file this process read is replaced (another command's full check, here of an
    older tree, then of the same tree) before its session seals: the seal writes whole,
    so the file never names a tree it was not checked at."""
    _ingest(repo, ["Use SQLite", "Cache in memory"])
    ws = Workspace.open(repo)
    path = checkpoint.path_of(ws.repo)
    older = git(repo, "rev-parse", "HEAD~1:decisions").strip()
    tree = _tree(ws)
    current = checkpoint.read(ws.repo, tree)
    assert current is not None
    checkpoint.write(ws.repo, Point(older, {"000/README.md": "f" * 40}, {}))
    replaced = path.read_bytes()
    for theirs in (replaced, path.read_bytes()):
        checkpoint.write(ws.repo, current)  # what the session read ...
        assert checkpoint.read(ws.repo, tree) == current
        os.replace(path, path.with_name("aside"))  # ... and another command replaced
        path.with_name("aside").unlink()
        path.write_bytes(theirs)
        new = Point("e" * 40, {**current.files, "000/9999-x.md": "d" * 40}, current.checks)
        checkpoint.extend(ws.repo, tree, Point(new.tree, {"000/9999-x.md": "d" * 40}, {}),
                          lambda new=new: new)
        assert _lines(path) == []
        assert checkpoint.read_any(ws.repo) == new
        assert checkpoint.read(ws.repo, older) is None
        replaced = checkpoint.path_of(ws.repo).read_bytes()
    ws.repo.close()


def test_the_point_is_never_written_through_a_symlink_or_a_second_link(repo: Path,
                                                                        tmp_path: Path) -> None:
    _ingest(repo, ["Use SQLite"])
    ws = Workspace.open(repo)
    path = checkpoint.path_of(ws.repo)
    outside = tmp_path / "outside"
    outside.write_bytes(path.read_bytes())
    os.replace(path, path.with_name("gone"))
    path.symlink_to(outside)
    _ingest(repo, ["Cache in memory"])
    assert not path.is_symlink() and outside.read_bytes() == path.with_name("gone").read_bytes()
    assert checkpoint.read(ws.repo, _tree(ws)) is not None
    kept = path.read_bytes()
    path.unlink()
    os.mkfifo(path)  # read by the next load: not waited on, replaced whole by its check
    _ingest(repo, ["A FIFO in its place"])
    assert path.is_file() and checkpoint.read(ws.repo, _tree(ws)) is not None
    kept = path.read_bytes()
    os.link(path, tmp_path / "second")
    _ingest(repo, ["Ship on Fridays"])
    assert (tmp_path / "second").read_bytes() == kept
    assert checkpoint.read(ws.repo, _tree(ws)) is not None
    ws.repo.close()


_ids = st.text("0123456789abcdef", min_size=2, max_size=4)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.dictionaries(_ids, _ids, max_size=4),
                          st.dictionaries(_ids, _ids, max_size=4),
                          st.integers(0, 2000)), min_size=1, max_size=8))
def test_applying_the_lines_gives_the_whole_point(
        repo: Path, sessions: list[tuple[dict[str, str], dict[str, str], int]]) -> None:
    """A base then sessions' deltas (some too large to append, which lays the file out
    afresh): the file always reads back as the point written whole would."""
    ws = Workspace.open(repo)
    path = checkpoint.path_of(ws.repo)
    whole = Point("0" * 40, {"README.md": "1" * 40}, {})
    checkpoint.write(ws.repo, whole)
    for n, (files, checks, padding) in enumerate(sessions, start=1):
        files = {**files, **{f"pad/{n}/{i}": "2" * 40 for i in range(padding)}}
        since, tree = whole.tree, f"{n:040x}"
        whole = Point(tree, {**whole.files, **files}, {**whole.checks, **checks})
        checkpoint.extend(ws.repo, since, Point(tree, files, checks),
                          lambda whole=whole: whole)
        assert checkpoint.read(ws.repo, tree) == whole
        assert checkpoint.read(ws.repo, since) is None
        lines = _lines(path)
        assert sum(map(len, lines)) <= max(len(path.read_bytes()) - sum(map(len, lines)),
                                           1 << 16)
    path.unlink()
    ws.repo.close()


def test_a_flat_log_appends_its_one_page(repo: Path) -> None:
    """A log as squad wrote it before folders: each session's line carries its records and
    the one index page, and the point read back is the full check's."""
    (repo / "decisions").mkdir()
    (repo / "decisions/README.md").write_text(render_index(Ledger()))
    git(repo, "add", "decisions")
    git(repo, "commit", "-qm", "an older squad's init")
    _ingest(repo, ["Use SQLite"])
    _ingest(repo, ["Cache in memory", "Ship on Fridays"])
    ws = Workspace.open(repo)
    path = checkpoint.path_of(ws.repo)
    delta = json.loads(_lines(path)[-1].split(b" ", 2)[2])
    assert sorted(delta["files"]) == ["0002-cache-in-memory.md", "0003-ship-on-fridays.md",
                                      "README.md"]
    point = checkpoint.read(ws.repo, _tree(ws))
    assert point is not None and point.files == layout.listing(ws.repo)
    path.unlink()
    found = ws.checked()
    assert layout.detect(found.files) == layout.FLAT
    assert point == Point(_tree(ws), found.files, found.checks or {})
    ws.repo.close()
