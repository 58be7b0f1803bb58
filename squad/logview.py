"""A derived answer file for `squad log` and `squad show`, per state of the log, read
without parsing.

Answering `log` or `show` from the records means loading the whole log (pydantic, YAML or
the parsed-log cache, GitPython, the status fold): a cost that grows with the log and an
import bill larger than the answer. This file holds, for one state of the log, everything
those two commands print: per record its JSON form with its current status and
superseded-by list, the status shown in the table, its path and blob id, and its edges in
the decision graph (what it names and what names it). Reading it needs only `json` and
`hashlib`, and a `show` reads one line, found through a fixed-width index: the same cost at
100 records as at 100,000. `log` without filters reads the newest page only.

It lives in the worktree's own git dir (`.git/squad/log-view`, or
`.git/worktrees/<name>/squad/log-view`), never in the working tree, keyed by the tree id of
`decisions/` at HEAD when it was built (all the log is), squad's version and the settings
file: a commit that leaves `decisions/` alone (code, a run's log) leaves it fresh; any other
log, version or settings makes it stale, and the command that finds it stale loads the log
as before and rewrites it (one temporary file and a rename: a reader sees the old file or
the new one). Deleting it costs one slower command.

Carried over a commit: the coordinator, which holds the log in memory, turns the view of
the log it loaded into the view of the log it committed (`carry`, `extend`): the old lines
are checked (index hash, every seal, the ids against its own log) and resealed for the new
key, only the rows the new records change are made again, and the result is the very bytes
a rebuild gives (a property test compares them). A rewrite, merge or renumber, a commit by
plain git, or a view that fails a check is not carried: the next `log` rebuilds it.

Form: a header line `squad-log-view 2 <version> <key> <settings digest> <count>
<index sha256> <index offset> <body offset> <check>` (check: sha256 of the fields before
it); then `count`
index lines `<id:010d> <offset:012d>\\n` in log order (ids never decrease); then one body
line per record, `<sha256> <json>\\n`, the sha256 covering the key and the JSON, and the
JSON naming its own position and id. A reader checks the header, and every line it uses:
its hash, its position and id, and that it ends where it should; a record not found is
believed only of an index whose sha256 matches the header's. A damaged, torn or spliced
file fails one of these and is never trusted: the command falls back to the log and
rewrites the file. Like the parsed-log cache it holds data only and is as trustworthy as
`.git` itself; `squad verify` never reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squad import __version__

if TYPE_CHECKING:
    from squad.ledger import Entry, Ledger
    from squad.records import Record

MAGIC = "squad-log-view 2"
NAME = "log-view"
_INDEX_LINE = 24  # "<id:010d> <offset:012d>\n"
# The graph groups of `squad show`, in the order it prints them.
GROUPS = ("supersedes", "accepts", "rejects", "inputs", "superseded by",
          "accepted/rejected by", "input to")
# an edge's kind -> its group on the record that names, and on the record named
FORWARD = {"input": "inputs", "supersedes": "supersedes", "accept": "accepts",
           "reject": "rejects"}
BACKWARD = {"input": "input to", "supersedes": "superseded by",
            "accept": "accepted/rejected by", "reject": "accepted/rejected by"}


class Damaged(Exception):
    """The file is not what it claims to be: fall back to the log and rebuild it."""


def view_path(git_dir: Path) -> Path:
    """The file in this worktree's own git dir (HEAD, which keys it, is per worktree)."""
    return git_dir / "squad" / NAME


def settings_digest(root: Path) -> str:
    """What the settings file was when a view was built: a view is served only while it is
    unchanged, so a broken squad.toml is reported by the full path, as before."""
    try:
        return hashlib.sha256(b"toml\0" + (root / "squad.toml").read_bytes()).hexdigest()
    except FileNotFoundError:
        return "none"


@dataclass(frozen=True)
class Row:
    """One record as `log` and `show` print it."""

    data: dict[str, Any]  # the record's JSON form + current_status + superseded_by
    shown: str  # the status column of `log`'s table
    when: str  # the date column of `log`'s table
    name: str  # path inside decisions/
    blob: str  # its git blob id
    graph: list[list[Any]]  # [label, [ids]] for the non-empty graph groups, in order

    @property
    def id(self) -> int:
        return int(self.data["id"])


# ---- building ---------------------------------------------------------------------------

def _named(record: Record) -> list[tuple[int, str]]:
    """What a record names, as `graph.all_edges` lists it: inputs, supersedes, target."""
    named = [(i, "input") for i in record.inputs] + [(i, "supersedes")
                                                     for i in record.supersedes]
    if record.target is not None:
        named.append((record.target, record.kind))
    return named


def _add_edges(edges: dict[int, dict[str, list[int]]], record: Record) -> None:
    """The record's edges, both ways, appended in log order (as `graph.all_edges` gives
    them): its own groups, and one more id at the end of each group of what it names."""
    for dst, kind in _named(record):
        forward, backward = FORWARD.get(kind), BACKWARD.get(kind)
        if forward is not None and backward is not None:
            edges.setdefault(record.id, {}).setdefault(forward, []).append(dst)
            edges.setdefault(dst, {}).setdefault(backward, []).append(record.id)


def _body(position: int, entry: Entry, blob: str, ledger: Ledger,
          groups: dict[str, list[int]]) -> bytes:
    """One record's line (before its seal): what `log` and `show` print of it."""
    record = entry.record
    status = ledger.status_of(record.id)
    shown = status or (f"{record.kind} {record.target:04d}"
                       if record.target is not None else record.kind)
    data = {**record.model_dump(mode="json"),
            "current_status": status or record.kind,
            "superseded_by": ledger.superseded_by().get(record.id, [])}
    return json.dumps([position, record.id, shown, record.date.strftime("%Y-%m-%d %H:%M"),
                       entry.name, blob, [[g, groups[g]] for g in GROUPS if g in groups],
                       data], separators=(",", ":")).encode()


def build(ledger: Ledger, listing: dict[str, str], key: str, settings: str) -> bytes:
    """The view of `ledger` (read from the decisions/ tree `key`; `listing`: path in
    decisions/ -> blob id)."""
    edges: dict[int, dict[str, list[int]]] = {}
    for entry in ledger.entries:
        _add_edges(edges, entry.record)
    bodies = [(entry.record.id, _body(position, entry, listing[entry.name], ledger,
                                      edges.get(entry.record.id, {})))
              for position, entry in enumerate(ledger.entries)]
    return _assemble(bodies, key, settings)


def extend(old: View, ledger: Ledger, blobs: dict[str, str], key: str) -> bytes:
    """The view of `ledger` for the decisions/ tree `key`, made from `old`, the view of the
    log `ledger` held before its last `len(blobs)` appends (`blobs`: their paths in
    decisions/ -> blob ids): the same bytes `build` gives, at the cost of rehashing the old
    lines and re-making only the rows the new records change (their targets, what they
    supersede or take as input). The old view is checked whole on the way (`Damaged`): its
    index against its sha256, each line against its seal, its ids against the ledger's."""
    entries = ledger.entries
    first = len(entries) - len(blobs)
    if first != old.count or first < 0:
        raise Damaged("the view is not of the log before these records")
    ids = old.ids()
    if ids != [entry.record.id for entry in entries[:first]]:
        raise Damaged("the view's ids are not the log's")
    if len(set(ids)) != len(ids):  # a broken log that repeats an id: rebuild it whole
        raise Damaged("the log repeats an id")
    bodies = old.bodies()
    edges: dict[int, dict[str, list[int]]] = {}
    changed: set[int] = set()
    for entry in entries[first:]:
        record = entry.record
        changed |= {dst for dst, _ in _named(record)} | ledger.affected(record)
    positions = {record_id: position for position, record_id in enumerate(ids)}
    for record_id in sorted(changed):
        position = positions.get(record_id)
        if position is not None:  # an old row: its groups so far, from its line
            row = old.row_of(bodies[position], position)
            edges[record_id] = {label: list(found) for label, found in row.graph}
    for entry in entries[first:]:
        _add_edges(edges, entry.record)
    out = [(record_id, body) for record_id, body in zip(ids, bodies, strict=True)]
    for record_id in changed:
        position = positions.get(record_id)
        if position is not None:
            row = old.row_of(bodies[position], position)
            out[position] = (record_id, _body(position, entries[position], row.blob, ledger,
                                              edges.get(record_id, {})))
    for position in range(first, len(entries)):
        entry = entries[position]
        out.append((entry.record.id, _body(position, entry, blobs[entry.name], ledger,
                                           edges.get(entry.record.id, {}))))
    return _assemble(out, key, old.settings)


def _assemble(bodies: list[tuple[int, bytes]], key: str, settings: str) -> bytes:
    """The file: header, index and the sealed lines of (id, body) in log order."""
    lines: list[bytes] = []
    index: list[bytes] = []
    offset = 0
    prefix = _sealer(key)
    for record_id, body in bodies:
        seal = prefix.copy()
        seal.update(body)
        line = b"%s %s\n" % (seal.hexdigest().encode(), body)
        index.append(b"%010d %012d\n" % (record_id, offset))
        lines.append(line)
        offset += len(line)
    index_bytes = b"".join(index)
    fields = (f"{MAGIC} {__version__} {key} {settings} {len(lines)} "
              f"{hashlib.sha256(index_bytes).hexdigest()}")
    # offsets of the index and body depend on the header's own length: fix it by padding
    head_len = len(fields) + 2 * 13 + 65 + 1
    tail = f" {head_len:012d} {head_len + len(index_bytes):012d}"
    check = hashlib.sha256((fields + tail).encode()).hexdigest()
    header = f"{fields}{tail} {check}\n".encode()
    assert len(header) == head_len
    return header + index_bytes + b"".join(lines)


def carry(git_dir: Path, old_key: str, key: str, settings: str, ledger: Ledger,
          blobs: dict[str, str]) -> bool:
    """After a commit that appended records: turn the view of the log before it (`old_key`,
    if that is the view on file and it checks out) into the view of `ledger` at `key`, so
    the first `log` or `show` after the commit reads a fresh view instead of loading the
    log. Returns whether it did; a missing, stale or damaged view is left for the next
    `log` to rebuild, and a view that cannot be written only costs speed."""
    path = view_path(git_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        data = extend(View.of_file(fd, old_key, settings), ledger, blobs, key)
    except Damaged:
        return False
    finally:
        os.close(fd)
    save(path, data)
    return True


def _seal(key: str, body: bytes) -> bytes:
    return hashlib.sha256(key.encode() + b"\0" + body).hexdigest().encode()


def save(path: Path, data: bytes) -> None:
    """Replace the file whole; a view that cannot be written only costs speed."""
    with contextlib.suppress(OSError):
        replace_whole(path, data)


def replace_whole(path: Path, data: bytes) -> None:
    """Replace the file whole: a reader sees the old file or the new one, never a mix (also
    the parse cache's way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# ---- reading ----------------------------------------------------------------------------

class View:
    """An open view, checked as it is read (`Damaged` on any fault)."""

    def __init__(self, read: Any, key: str, settings: str, count: int, index_at: int,
                 body_at: int, end: int, index_sha: str) -> None:
        self._read = read  # (offset, size) -> bytes
        self.key, self.settings = key, settings
        self.count = count
        self._index_at, self._body_at, self._end = index_at, body_at, end
        self._index_sha = index_sha

    @classmethod
    def of_bytes(cls, data: bytes, key: str, settings: str) -> View:
        return cls._open(lambda at, size: data[at:at + size], len(data), key, settings)

    @classmethod
    def of_file(cls, fd: int, key: str, settings: str) -> View:
        return cls._open(lambda at, size: os.pread(fd, size, at), os.fstat(fd).st_size,
                         key, settings)

    @classmethod
    def _open(cls, read: Any, end: int, key: str, settings: str) -> View:
        """The view, if it is of the decisions/ tree `key` with these settings; else
        `Damaged`."""
        first = read(0, 400)
        line, sep, _ = first.partition(b"\n")
        if not sep:
            raise Damaged("no header")
        try:
            *fields, check = line.decode("ascii").split(" ")
            magic_a, magic_b, version, at, digest, count, index_sha, index_at, body_at = fields
        except ValueError:
            raise Damaged("a header of another form") from None
        if hashlib.sha256(" ".join(fields).encode()).hexdigest() != check:
            raise Damaged("the header's check fails")
        if (f"{magic_a} {magic_b}", version) != (MAGIC, __version__):
            raise Damaged("another format or squad version")
        if at != key or digest != settings:
            raise Damaged("stale: another log or other settings")
        n, i, b = int(count), int(index_at), int(body_at)
        if i != len(line) + 1 or b != i + n * _INDEX_LINE or b > end:
            raise Damaged("the header's offsets do not fit the file")
        return cls(read, key, settings, n, i, b, end, index_sha)

    def _offset(self, position: int) -> tuple[int, int]:
        raw = self._read(self._index_at + position * _INDEX_LINE, _INDEX_LINE)
        if len(raw) != _INDEX_LINE or raw[10:11] != b" " or raw[-1:] != b"\n":
            raise Damaged("a damaged index line")
        try:
            return int(raw[:10]), self._body_at + int(raw[11:23])
        except ValueError:
            raise Damaged("a damaged index line") from None

    def _rows(self, start: int, stop: int) -> Iterator[Row]:
        """Rows at positions start..stop-1, read in one piece and each checked."""
        if start >= stop:
            return
        first = self._offset(start)[1]
        last = self._offset(stop)[1] if stop < self.count else self._end
        if not self._body_at <= first <= last <= self._end:
            raise Damaged("index offsets out of order")
        chunk = self._read(first, last - first)
        if len(chunk) != last - first or not chunk.endswith(b"\n"):
            raise Damaged("the body is torn")
        lines = chunk[:-1].split(b"\n")
        if len(lines) != stop - start:
            raise Damaged("the body does not fit the index")
        for position, line in zip(range(start, stop), lines, strict=True):
            yield self._row(line, position, None)

    def _row(self, line: bytes, position: int, record_id: int | None) -> Row:
        seal, _, body = line.partition(b" ")
        if _seal(self.key, body) != seal:
            raise Damaged(f"line {position} fails its check")
        return self.row_of(body, position, record_id)

    def row_of(self, body: bytes, position: int, record_id: int | None = None) -> Row:
        """The row a checked line's body holds, if it names its own place."""
        try:
            at, rid, shown, when, name, blob, graph, data = json.loads(body)
        except ValueError:
            raise Damaged(f"line {position} is not what it should be") from None
        if at != position or (record_id is not None and rid != record_id) \
                or data.get("id") != rid:
            raise Damaged(f"line {position} is out of place")
        return Row(data, shown, when, name, blob, graph)

    def rows(self, start: int = 0) -> list[Row]:
        """The rows from position `start` to the newest, in log order."""
        return list(self._rows(max(0, start), self.count))

    def get(self, record_id: int) -> Row | None:
        """The row of `record_id` (the last one, if a broken log repeats an id), by a
        binary search of the index: a few small reads at any length."""
        lo, hi = 0, self.count
        while lo < hi:  # the first position whose id is > record_id
            mid = (lo + hi) // 2
            if self._offset(mid)[0] <= record_id:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0 or self._offset(lo - 1)[0] != record_id:
            # A found line proves itself (its id and place are sealed); an absence is only
            # believed of an index that is whole (one hash of it, on this rare path).
            size = self._body_at - self._index_at
            if hashlib.sha256(self._read(self._index_at, size)).hexdigest() != self._index_sha:
                raise Damaged("the index fails its check")
            return None
        position = lo - 1
        start = self._offset(position)[1]
        stop = self._offset(position + 1)[1] if position + 1 < self.count else self._end
        raw = self._read(start, stop - start)
        if not (self._body_at <= start < stop <= self._end) or len(raw) != stop - start \
                or not raw.endswith(b"\n"):
            raise Damaged(f"line {position} is torn")
        return self._row(raw[:-1], position, record_id)

    def ids(self) -> list[int]:
        """Every record id in log order, from an index checked whole against the header."""
        size = self._body_at - self._index_at
        raw = self._read(self._index_at, size)
        if len(raw) != size or hashlib.sha256(raw).hexdigest() != self._index_sha:
            raise Damaged("the index fails its check")
        return [int(raw[at:at + 10]) for at in range(0, size, _INDEX_LINE)]

    def bodies(self) -> list[bytes]:
        """Every line's body in log order, each checked against its seal and its offset in
        the index (which `ids` checks whole): what `extend` carries over."""
        size = self._end - self._body_at
        chunk = self._read(self._body_at, size)
        if len(chunk) != size or (size and not chunk.endswith(b"\n")):
            raise Damaged("the body is torn")
        lines = chunk[:-1].split(b"\n") if size else []
        if len(lines) != self.count:
            raise Damaged("the body does not fit the index")
        index = self._read(self._index_at, self._body_at - self._index_at)
        offsets = b"".join(index[at + 11:at + 24] for at in range(0, len(index), _INDEX_LINE))
        if offsets != b"".join(b"%012d\n" % at for at in _starts(lines)):
            raise Damaged("a line is not where the index says")
        prefix = _sealer(self.key)
        bodies = []
        for position, line in enumerate(lines):
            seal, _, body = line.partition(b" ")
            check = prefix.copy()
            check.update(body)
            if check.hexdigest().encode() != seal:
                raise Damaged(f"line {position} fails its check")
            bodies.append(body)
        return bodies


def _starts(lines: list[bytes]) -> Iterator[int]:
    """The offset of each line (each ends with one more byte, its newline)."""
    offset = 0
    for line in lines:
        yield offset
        offset += len(line) + 1


def _sealer(key: str) -> Any:
    """A hash primed with the key: each line's seal is a copy of it fed the line's body."""
    return hashlib.sha256(key.encode() + b"\0")
