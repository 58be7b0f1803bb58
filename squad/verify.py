"""`squad verify`: re-derive everything the coordinator promises and report each fault.

Checks, in order: every record parses and is named for its id and title; ids run 1..N with no
gap or duplicate; each `prev` is the hash of the record before; references resolve to earlier
decisions and supersession has no cycle; the index matches the fold of the log; and no record
was changed or removed after its commit (in the working tree or in history).
"""

from __future__ import annotations

from dataclasses import dataclass

from squad.errors import RecordError
from squad.ledger import Entry, Ledger, render_index
from squad.records import RECORD_NAME, digest, filename, parse_record
from squad.workspace import DECISIONS, INDEX, Workspace


@dataclass(frozen=True)
class Fault:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def verify(ws: Workspace) -> list[Fault]:
    faults: list[Fault] = []
    entries: list[Entry] = []
    folder = ws.decisions
    names = sorted(p.name for p in folder.iterdir() if RECORD_NAME.match(p.name)) \
        if folder.is_dir() else []
    for name in names:
        path = f"{DECISIONS}/{name}"
        if (folder / name).is_symlink() or not (folder / name).is_file():
            faults.append(Fault(path, "named like a record but not a regular file"))
            continue
        data = (folder / name).read_bytes()
        try:
            record = parse_record(data.decode("utf-8"))
        except UnicodeDecodeError:
            faults.append(Fault(path, "not valid UTF-8"))
            continue
        except RecordError as exc:
            faults.append(Fault(path, f"invalid record: {exc.message}"))
            continue
        if filename(record) != name:
            faults.append(Fault(path, f"record {record.id} should be named {filename(record)}"))
        entries.append(Entry(record, name, digest(data)))
    entries.sort(key=lambda e: (e.record.id, e.name))
    faults += _numbering_and_chain(entries)
    ledger = Ledger(entries)
    faults += _references(ledger)
    faults += _index(ws, ledger)
    faults += _history(ws, names)
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


def _index(ws: Workspace, ledger: Ledger) -> list[Fault]:
    if not ledger.entries:
        return []
    path = ws.root / INDEX
    if not path.exists():
        return [Fault(INDEX, "missing; run `squad ingest` to regenerate it")]
    if path.is_symlink() or not path.is_file():
        return [Fault(INDEX, "not a regular file")]
    if path.read_bytes() != render_index(ledger, ws.root).encode("utf-8"):
        return [Fault(INDEX, "out of sync with the records (stale or edited index)")]
    return []


def _history(ws: Workspace, names: list[str]) -> list[Fault]:
    faults = []
    repo = ws.repo
    for path, status in sorted(repo.uncommitted(DECISIONS + "/").items()):
        name = path.rsplit("/", 1)[-1]
        if path.count("/") == 1 and (RECORD_NAME.match(name) or path == INDEX):
            what = {"??": "not committed", " D": "deleted", "D ": "deleted"}.get(
                status, "changed since its commit")
            faults.append(Fault(path, f"{what} (git status {status.strip()})"))
    for sha, letter, path, ids in repo.changes_to(DECISIONS + "/"):
        name = path.rsplit("/", 1)[-1]
        if path.count("/") != 1 or not RECORD_NAME.match(name):
            continue
        if letter == "A" and ids:
            continue
        what = {"M": "edited after it was committed", "D": "deleted after it was committed",
                "A": "added by a commit that is not squad's"}.get(letter, f"changed ({letter})")
        faults.append(Fault(path, f"{what} (commit {sha[:12]})"))
    committed = {n for n in repo.list_dir(DECISIONS) if RECORD_NAME.match(n)}
    for name in sorted(committed - set(names)):
        if not any(f.path == f"{DECISIONS}/{name}" for f in faults):
            faults.append(Fault(f"{DECISIONS}/{name}", "committed but missing from the folder"))
    return faults
