"""`squad verify`: re-derive everything the coordinator promises and report each fault.

Checks, in order: every record parses and is named for its id and title; ids run 1..N with no
gap or duplicate; each `prev` is the hash of the record before; dates never go backwards; a
renumbered record is its original but for id, chain link and re-pointed references; every
run a record names is recorded; references resolve to earlier decisions and supersession has
no cycle; the index matches the fold of the log; and no record was changed or removed after
its commit (in the working tree or in history, merge commits included), each commit that adds
a record naming it in its `Squad-Decision` trailer.
"""

from __future__ import annotations

import gc
import os
import stat
from dataclasses import dataclass

from squad import layout
from squad.clock import format_instant
from squad.errors import RecordError
from squad.ledger import Entry, Ledger
from squad.records import digest, filename, parse_record
from squad.renumber import Origins, id_of, record_names, renumbering_problem
from squad.vcs import Change, HistoryWalk
from squad.workspace import DECISIONS, Workspace

RUNS = ".squad/runs"  # as in squad.run, which verify does not import (it pulls in the models)
MERGE_HINT = ("two logs were joined by a plain git merge or pull: undo it (`git merge "
              "--abort`, or `git reset --keep HEAD^` once committed) and join them with "
              "`squad merge <branch>`")
SQUASH_HINT = ("a squash merge or a hand-made commit? this log needs merge commits (or "
               "rebase-merges): squash merges drop squad's per-decision commits")


@dataclass(frozen=True)
class Fault:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def verify(ws: Workspace) -> list[Fault]:
    # Tens of thousands of objects that live to the end: the cycle collector would walk
    # them again and again as they are made (a sixth of the time at 10,000 records), and
    # finds no cycle among them.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _verify(ws)
    finally:
        if enabled:
            gc.enable()


def _verify(ws: Workspace) -> list[Fault]:
    # The history walk is mostly git's work: it runs on another core while this one parses
    # the working tree's records.
    walk = ws.repo.history_walk(DECISIONS + "/")
    try:
        return _check(ws, walk)
    finally:
        walk.close()


def _check(ws: Workspace, walk: HistoryWalk) -> list[Fault]:
    faults: list[Fault] = []
    entries: list[Entry] = []
    names = _record_files(ws)
    shape = layout.detect(names)
    base = str(ws.decisions)
    for name in names:
        path, file = f"{DECISIONS}/{name}", layout.split(name)[1]
        data = _regular_file(os.path.join(base, name))
        if data is None:
            faults.append(Fault(path, "named like a record but not a regular file"))
            continue
        try:
            record = parse_record(data.decode("utf-8"))
        except UnicodeDecodeError:
            faults.append(Fault(path, "not valid UTF-8"))
            continue
        except RecordError as exc:
            faults.append(Fault(path, f"invalid record: {exc.message}"))
            continue
        if filename(record) != file:
            faults.append(Fault(path, f"record {record.id} should be named {filename(record)}"))
        elif layout.place(file, shape) != name:
            faults.append(Fault(path, _MISPLACED[shape].format(
                place=f"{DECISIONS}/{layout.place(file, shape)}")))
        entries.append(Entry(record, name, digest(data)))
    entries.sort(key=lambda e: (e.record.id, e.name))
    faults += _numbering_and_chain(entries)
    if any(f.problem.startswith("duplicate id") for f in faults):
        faults.append(Fault(DECISIONS, MERGE_HINT))
    faults += _dates(entries)
    origins = Origins(ws.repo)
    faults += _renumbered(ws, origins, entries)
    faults += _runs(ws, entries)
    ledger = Ledger(entries)
    faults += _references(ledger)
    faults += _index(ws, ledger, shape)
    changes, merges = walk.result()
    faults += _history(ws, names, changes)
    faults += _merges(ws, origins, merges)
    return faults


def _regular_file(path: str) -> bytes | None:
    """The bytes of a regular file (not through a symlink), None for anything else; plain
    os calls, as this runs once per record."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO: no wait
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        chunks = [os.read(fd, info.st_size + 1)]  # the whole file in one read, as a rule
        while chunks[-1]:  # it grew, or the read came back short: read on to the end
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


_MISPLACED = {
    layout.FOLDERS: "misplaced: a record lives in the folder of its thousand, {place}",
    layout.FLAT: "in a folder, but this log is flat (records directly in decisions/): "
                 "`squad migrate` moves every record into folders at once ({place} now)",
}


def _record_files(ws: Workspace) -> list[str]:
    """Paths inside decisions/ of the working tree's record files, in either layout."""
    folder = ws.decisions
    if not folder.is_dir():
        return []
    names = []
    for item in folder.iterdir():
        if layout.is_record(item.name):
            names.append(item.name)
        elif layout.FOLDER.match(item.name) and item.is_dir() and not item.is_symlink():
            names += [f"{item.name}/{inner.name}" for inner in item.iterdir()
                      if layout.is_record(f"{item.name}/{inner.name}")]
    return sorted(names)


def count(ws: Workspace) -> int:
    """How many record files the working tree holds (what `verify` just checked)."""
    return len(_record_files(ws))


def _dates(entries: list[Entry]) -> list[Fault]:
    """Dates never go backwards; a renumbered record keeps the date it was first committed
    with (checked against its original instead), but later records may not predate it."""
    faults: list[Fault] = []
    latest: Entry | None = None
    for entry in entries:
        record = entry.record
        if latest is not None and record.was is None and record.date < latest.record.date:
            faults.append(Fault(f"{DECISIONS}/{entry.name}",
                                f"dated {format_instant(record.date)}, before {latest.name} "
                                f"({format_instant(latest.record.date)}): dates never go "
                                "backwards"))
        if latest is None or record.date > latest.record.date:
            latest = entry
    return faults


def _renumbered(ws: Workspace, origins: Origins, entries: list[Entry]) -> list[Fault]:
    moved = [entry for entry in entries if entry.record.was is not None]
    if not moved:
        return []
    listing = record_names(ws.repo)
    faults = []
    for entry in moved:
        problem = renumbering_problem(origins, entry.record, listing.get(entry.file, ""),
                                      listing)
        if problem:
            faults.append(Fault(f"{DECISIONS}/{entry.name}", problem))
    return faults


def _runs(ws: Workspace, entries: list[Entry]) -> list[Fault]:
    named = {entry.record.run: entry for entry in entries if entry.record.run}
    if not named:
        return []
    committed = set(ws.repo.list_dirs(RUNS))
    return [Fault(f"{DECISIONS}/{entry.name}", f"names run {run}, which is not recorded in "
                                               f"{RUNS}/ (removed?)")
            for run, entry in sorted(named.items())
            if run not in committed and not (ws.root / RUNS / run / "events.jsonl").is_file()]


def _merges(ws: Workspace, origins: Origins,
            merges: list[tuple[str, list[str]]]) -> list[Fault]:
    """A merge commit may bring records from its parents unchanged, or renumber them as
    `squad merge` does; any other record it adds, changes or drops is a fault."""
    faults: list[Fault] = []
    repo = ws.repo
    for sha, parents in merges:
        files = layout.listing(repo, sha)
        mine, shape = layout.by_name(files), layout.detect(files)

        def at(name: str, shape: layout.Layout = shape) -> str:
            return f"{DECISIONS}/{layout.place(name, shape)}"

        sides = [record_names(repo, parent) for parent in parents]
        where = f"merge commit {sha[:12]}"
        for name, blob in sorted(mine.items()):
            if any(side.get(name) == blob for side in sides):
                continue
            try:
                record = origins.record(blob)
            except (RecordError, UnicodeDecodeError):
                faults.append(Fault(at(name), f"invalid record added by {where}"))
                continue
            if record.was is None:
                faults.append(Fault(at(name),
                                    f"added or changed by {where}, neither taken from a "
                                    "parent nor renumbered by `squad merge`"))
                continue
            problem = renumbering_problem(origins, record, blob, mine)
            if problem:
                faults.append(Fault(at(name), f"{problem} ({where})"))
        for side in sides:
            gone = [(n, b) for n, b in side.items() if mine.get(n) != b]
            if not gone:
                continue
            try:
                kept = {origins.key(origins.record(b), b)
                        for n, b in mine.items() if side.get(n) != b}
                for name, blob in sorted(gone, key=lambda item: id_of(item[0])):
                    if origins.key(origins.record(blob), blob) not in kept:
                        faults.append(Fault(at(name), f"dropped by {where}"))
            except (RecordError, UnicodeDecodeError):
                faults.append(Fault(DECISIONS, f"{where} holds a record that does not parse"))
    return faults


def _numbering_and_chain(entries: list[Entry]) -> list[Fault]:
    faults = []
    previous: Entry | None = None
    for position, entry in enumerate(entries, start=1):
        path, record = f"{DECISIONS}/{entry.name}", entry.record
        if previous and record.id == previous.record.id:
            faults.append(Fault(path, f"duplicate id {record.id} (also {previous.name})"))
        elif record.id != position and not (previous and record.id == previous.record.id):
            faults.append(Fault(path, f"numbering gap: id {record.id} where {position} was due"))
        expected = previous.digest if previous else None
        if record.prev != expected:
            after = f"the hash of {previous.name}" if previous else "null for the first record"
            faults.append(Fault(path, f"hash chain broken: prev is {record.prev}, "
                                      f"expected {expected} ({after})"))
        previous = entry
    return faults


def _references(ledger: Ledger) -> list[Fault]:
    faults = []
    ids = {entry.record.id: entry for entry in ledger.entries}
    for entry in ledger.entries:
        record, path = entry.record, f"{DECISIONS}/{entry.name}"
        refs = [("supersedes", r) for r in record.supersedes] + \
               [("inputs", r) for r in record.inputs]
        if record.target is not None:
            refs.append(("target", record.target))
        for label, ref in refs:
            if ref not in ids:
                faults.append(Fault(path, f"{label} names {ref}, which is not in the log"))
            elif ref >= record.id:
                faults.append(Fault(path, f"{label} names {ref}, which is not an earlier record"))
    for cycle in _cycles({e.record.id: e.record.supersedes for e in ledger.entries}):
        first = ids[cycle[0]]
        chain = " -> ".join(f"{i:04d}" for i in [*cycle, cycle[0]])
        faults.append(Fault(f"{DECISIONS}/{first.name}", f"supersession cycle: {chain}"))
    return faults


def _cycles(graph: dict[int, tuple[int, ...]]) -> list[list[int]]:
    """Every cycle of the supersedes graph, each reported once from its smallest id."""
    found: list[list[int]] = []
    seen: set[frozenset[int]] = set()
    state: dict[int, int] = {}  # 1 = on the current path, 2 = finished

    def visit(node: int, path: list[int]) -> None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    start = cycle.index(min(cycle))
                    found.append(cycle[start:] + cycle[:start])
            elif nxt in graph and state.get(nxt) is None:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def _index(ws: Workspace, ledger: Ledger, shape: layout.Layout) -> list[Fault]:
    """Every index page is what the fold of the log renders, and no page is left over."""
    if not ledger.entries:
        return []
    faults = []
    expected = layout.pages(ledger, shape, ws.root)
    present = {layout.PAGE} | {
        f"{item.name}/{layout.PAGE}" for item in ws.decisions.iterdir()
        if layout.FOLDER.match(item.name) and (item / layout.PAGE).exists()}
    for name in sorted(set(expected) | present):
        path = ws.decisions / name
        where = f"{DECISIONS}/{name}"
        if name not in expected:
            faults.append(Fault(where, "an index page for a folder that holds no records "
                                       "(stale, or a flat log's folder)"))
        elif not path.exists():
            faults.append(Fault(where, "missing; run `squad ingest` to regenerate it"))
        elif path.is_symlink() or not path.is_file():
            faults.append(Fault(where, "not a regular file"))
        elif path.read_bytes() != expected[name]:
            faults.append(Fault(where, "out of sync with the records (stale or edited index)"))
    return faults


def _history(ws: Workspace, names: list[str], changes: list[Change]) -> list[Fault]:
    faults = []
    repo = ws.repo
    prefix = DECISIONS + "/"
    for path, status in sorted(repo.uncommitted(prefix).items()):
        if layout.owned(path.removeprefix(prefix)):
            what = {"??": "not committed", " D": "deleted", "D ": "deleted"}.get(
                status, "changed since its commit")
            faults.append(Fault(path, f"{what} (git status {status.strip()})"))
    added: dict[str, tuple[list[str], list[str]]] = {}
    moves: dict[str, list[Change]] = {}
    for change in changes:
        sha, letter, path, ids = change.commit, change.letter, change.path, change.decisions
        if not layout.is_record(path.removeprefix(prefix)):
            continue
        if change.layout == layout.TRAILER[1]:
            moves.setdefault(sha, []).append(change)
            continue
        if letter == "A" and ids:
            added.setdefault(sha, (ids, []))[1].append(path)
            continue
        what = {"M": "edited after it was committed", "D": "deleted after it was committed",
                "A": f"added by a commit that is not squad's ({SQUASH_HINT})"}.get(
                    letter, f"changed ({letter})")
        faults.append(Fault(path, f"{what} (commit {sha[:12]})"))
    for sha, (ids, paths) in added.items():
        named = sorted(int(v) for v in ids if v.isdigit())
        adds = sorted(id_of(p.rsplit("/", 1)[-1]) for p in paths)
        if named != adds:
            faults.append(Fault(paths[0], f"added by commit {sha[:12]}, whose Squad-Decision "
                                          f"trailer names {', '.join(ids)}, not the record(s) "
                                          "it adds"))
    for sha, changes in moves.items():
        faults += _migration(sha, changes)
    committed = layout.records(layout.listing(repo))
    for name in sorted(set(committed) - set(names)):
        if not any(f.path == f"{DECISIONS}/{name}" for f in faults):
            faults.append(Fault(f"{DECISIONS}/{name}", "committed but missing from the folder"))
    return faults


def _migration(sha: str, changes: list[Change]) -> list[Fault]:
    """A commit that moves a flat log into folders (`squad migrate`) may only move each
    record, the same blob, from decisions/ to the folder of its thousand."""
    where = f"the layout commit {sha[:12]}"
    gone: dict[str, Change] = {}
    came: dict[str, Change] = {}
    faults = []
    for change in changes:
        name = change.path.removeprefix(DECISIONS + "/")
        if change.letter == "D" and "/" not in name:
            gone[name] = change
        elif change.letter == "A" and name == layout.place(layout.split(name)[1],
                                                           layout.FOLDERS):
            came[layout.split(name)[1]] = change
        else:
            faults.append(Fault(change.path, f"changed ({change.letter}) by {where}, which "
                                             "may only move records into their folders"))
    for name in sorted(set(gone) | set(came)):
        old, new = gone.get(name), came.get(name)
        if old is None or new is None:
            path = (new or old).path  # type: ignore[union-attr]
            faults.append(Fault(path, f"{'added' if old is None else 'removed'} by {where}, "
                                      "which may only move records into their folders"))
        elif old.old != new.new:
            faults.append(Fault(new.path, f"changed while {where} moved it (a move keeps the "
                                          "bytes)"))
    return faults
