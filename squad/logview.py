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
the log it loaded into the view of the log it committed (`carry`, `extend`). A line's seal
does not depend on the key, so a line that does not change is carried as it is: only the
chunks of the index that hold a row the new records change (their targets, what they
supersede or take as input) or the new rows are read, checked and made again; the other
chunks are copied by the kernel, unread, with their hashes. The result is the very bytes a
rebuild gives (a property test compares them). A rewrite, merge or renumber, a commit by
plain git, or a view that fails a check is not carried: the next `log` rebuilds it.

Form: a header line `squad-log-view 3 <version> <key> <settings digest> <count>
<table sha256> <table offset> <body offset> <check>` (check: sha256 of the fields before
it); then the chunk table, one line per CHUNK rows, `<first id:010d> <body start:012d>
<sha256 of the chunk's index lines>`; then `count` index lines `<id:010d> <offset in its
chunk:012d> <seal>` in log order (ids never decrease; the seal: 128 bits of the sha256 of
the line's body); then one body line per record, its JSON, naming its own position and id.
Every byte a reader uses hangs from the header by a chain of hashes: the header (which
names the key) holds the table's sha256, the table each chunk's, a chunk's index lines each
line's seal. A reader checks the header and the table whole, each chunk of the index it
uses whole (so an absence is as sure as a find), and each line it uses against its seal,
its position and its id. A damaged, torn or spliced file, or a line of another state of
the log, fails one of these and is never trusted: the command falls back to the log and
rewrites the file. Like the parsed-log cache it holds data only and is as trustworthy as
`.git` itself; `squad verify` never reads it.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
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

MAGIC = "squad-log-view 3"
NAME = "log-view"
CHUNK = 128  # rows per chunk of the index, one hash each in the chunk table
_SEAL = 32  # hex digits of a line's seal
_INDEX_LINE = 10 + 1 + 12 + 1 + _SEAL + 1  # "<id:010d> <offset in chunk:012d> <seal>\n"
_TABLE_LINE = 10 + 1 + 12 + 1 + 64 + 1  # "<first id:010d> <body start:012d> <sha256>\n"
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
    return assemble(bodies, key, settings)


def assemble(bodies: list[tuple[int, bytes]], key: str, settings: str) -> bytes:
    """The file of (id, body) in log order, for the decisions/ tree `key`."""
    chunks = [_Chunk.made([(rid, body, _seal(body)) for rid, body in bodies[at:at + CHUNK]])
              for at in range(0, len(bodies), CHUNK)]
    return _materialize(_pieces(chunks, len(bodies), key, settings), b"")


def extend(old: View, ledger: Ledger, blobs: dict[str, str], key: str) -> bytes:
    """The view of `ledger` for the decisions/ tree `key`, made from `old`, the view of the
    log `ledger` held before its last `len(blobs)` appends (`blobs`: their paths in
    decisions/ -> blob ids): the same bytes `build` gives (see `_carried`)."""
    return _materialize(_carried(old, ledger, blobs, key), old.read_all())


@dataclass(frozen=True)
class _Span:
    """Bytes of the old file, copied as they are."""

    at: int
    size: int


_Piece = bytes | _Span


@dataclass(frozen=True)
class _Chunk:
    """Up to CHUNK rows as the file holds them: their index lines and their body lines,
    each either made anew or a span of the old file."""

    first: int  # the id of its first row
    count: int
    index: _Piece
    body: _Piece
    body_size: int
    sha: bytes  # sha256 of its index lines, hex

    @classmethod
    def made(cls, rows: list[tuple[int, bytes, bytes]]) -> _Chunk:
        """A chunk of (id, body, seal) rows."""
        index: list[bytes] = []
        offset = 0
        for record_id, body, seal in rows:
            index.append(b"%010d %012d %s\n" % (record_id, offset, seal))
            offset += len(body) + 1
        index_bytes = b"".join(index)
        body_bytes = b"".join(body + b"\n" for _, body, _ in rows)
        return cls(rows[0][0], len(rows), index_bytes, body_bytes, len(body_bytes),
                   hashlib.sha256(index_bytes).hexdigest().encode())


def _pieces(chunks: list[_Chunk], count: int, key: str, settings: str) -> list[_Piece]:
    """The file: header, chunk table, every chunk's index lines, every chunk's body."""
    table: list[bytes] = []
    start = 0
    for chunk in chunks:
        table.append(b"%010d %012d %s\n" % (chunk.first, start, chunk.sha))
        start += chunk.body_size
    table_bytes = b"".join(table)
    fields = (f"{MAGIC} {__version__} {key} {settings} {count} "
              f"{hashlib.sha256(table_bytes).hexdigest()}")
    # offsets of the table and body depend on the header's own length: fix it by padding
    head_len = len(fields) + 2 * 13 + 65 + 1
    body_at = head_len + len(table_bytes) + count * _INDEX_LINE
    tail = f" {head_len:012d} {body_at:012d}"
    check = hashlib.sha256((fields + tail).encode()).hexdigest()
    header = f"{fields}{tail} {check}\n".encode()
    assert len(header) == head_len
    out: list[_Piece] = [header + table_bytes]
    for piece in [chunk.index for chunk in chunks] + [chunk.body for chunk in chunks]:
        last = out[-1]
        if isinstance(piece, _Span) and isinstance(last, _Span) \
                and last.at + last.size == piece.at:
            out[-1] = _Span(last.at, last.size + piece.size)  # one copy, not many
        elif isinstance(piece, bytes) and isinstance(last, bytes):
            out[-1] = last + piece
        else:
            out.append(piece)
    return out


def _materialize(pieces: list[_Piece], old: bytes) -> bytes:
    return b"".join(piece if isinstance(piece, bytes) else old[piece.at:piece.at + piece.size]
                    for piece in pieces)


def _carried(old: View, ledger: Ledger, blobs: dict[str, str], key: str) -> list[_Piece]:
    """The pieces of the view of `ledger` at `key`, from `old`, the view of its first
    `old.count` records. Only the chunks holding a row the new records change (their
    targets, what they supersede or take as input) or the new rows are made again; every
    other chunk is copied as it is, its index lines and body lines in two spans of the old
    file, with its hash from the old table: a damaged chunk stays damaged in the new file,
    and its readers still find out. What is made again is checked first (`Damaged`): the
    old table against its sha256, each chunk read against its hash, each of its lines
    against its seal, its ids against the ledger's."""
    entries = ledger.entries
    first = len(entries) - len(blobs)
    if first != old.count or first < 0:
        raise Damaged("the view is not of the log before these records")
    if any(entries[c * CHUNK].record.id != found for c, found in enumerate(old.firsts)):
        raise Damaged("the view's ids are not the log's")
    previous = entries[first - 1].record.id if first else 0
    for entry in entries[first:]:  # new ids only grow: an old row is found by its id
        if entry.record.id <= previous:
            raise Damaged("the log repeats an id")
        previous = entry.record.id
    changed: set[int] = set()
    for entry in entries[first:]:
        record = entry.record
        changed |= {dst for dst, _ in _named(record)} | ledger.affected(record)
    positions: dict[int, list[int]] = {}  # changed old id -> its positions (a broken log
    for record_id in changed:             # may repeat one: each of its rows is remade)
        lo = bisect.bisect_left(entries, record_id, 0, first, key=_id_of)
        hi = bisect.bisect_right(entries, record_id, lo, first, key=_id_of)
        if hi > lo:
            positions[record_id] = list(range(lo, hi))
    touched = {at // CHUNK for found in positions.values() for at in found}
    if first % CHUNK:
        touched.add(first // CHUNK)  # the last chunk, which the new rows fill up
    rows: dict[int, tuple[int, bytes, bytes]] = {}  # old position -> (id, body, seal)
    for c in sorted(touched):
        for position, row in enumerate(old.chunk_rows(c), start=c * CHUNK):
            if row[0] != entries[position].record.id:
                raise Damaged("the view's ids are not the log's")
            rows[position] = row
    edges: dict[int, dict[str, list[int]]] = {}
    blob_at: dict[int, str] = {}
    for record_id, found in positions.items():  # an old row: its groups so far, its blob
        for position in found:
            made = old.row_of(rows[position][1], position, record_id)
            edges[record_id] = {label: list(ids) for label, ids in made.graph}
            blob_at[position] = made.blob
    for entry in entries[first:]:
        _add_edges(edges, entry.record)
    for position, blob in blob_at.items():
        entry = entries[position]
        body = _body(position, entry, blob, ledger, edges.get(entry.record.id, {}))
        rows[position] = (entry.record.id, body, _seal(body))
    for position in range(first, len(entries)):
        entry = entries[position]
        body = _body(position, entry, blobs[entry.name], ledger,
                     edges.get(entry.record.id, {}))
        rows[position] = (entry.record.id, body, _seal(body))
    chunks: list[_Chunk] = []
    for c in range((len(entries) + CHUNK - 1) // CHUNK):
        if c < len(old.firsts) and c not in touched:
            chunks.append(old.chunk_as_is(c))
        else:
            chunks.append(_Chunk.made([rows[at] for at in
                                       range(c * CHUNK, min(len(entries), (c + 1) * CHUNK))]))
    return _pieces(chunks, len(entries), key, old.settings)


def _id_of(entry: Entry) -> int:
    return entry.record.id


def carry(git_dir: Path, old_key: str, key: str, settings: str, ledger: Ledger,
          blobs: dict[str, str]) -> bool:
    """After a commit that appended records: turn the view of the log before it (`old_key`,
    if that is the view on file and it checks out) into the view of `ledger` at `key`, so
    the first `log` or `show` after the commit reads a fresh view instead of loading the
    log. The chunks it leaves alone are copied from the old file by the kernel
    (`copy_file_range`), never read into Python. Returns whether it did; a missing, stale
    or damaged view is left for the next `log` to rebuild, and a view that cannot be
    written only costs speed."""
    path = view_path(git_dir)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        pieces = _carried(View.of_file(fd, old_key, settings), ledger, blobs, key)
        with contextlib.suppress(OSError):
            _write_pieces(path, pieces, fd)
    except Damaged:
        return False
    finally:
        os.close(fd)
    return True


def _write_pieces(path: Path, pieces: list[_Piece], src: int) -> None:
    """Replace the file whole (as `replace_whole`), copying the spans from `src`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for piece in pieces:
                if isinstance(piece, bytes):
                    _write_all(dst, piece)
                else:
                    _copy_span(src, dst, piece)
        finally:
            os.close(dst)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_span(src: int, dst: int, span: _Span) -> None:
    """Copy a span of `src` to the end of `dst`: in the kernel where it can."""
    at, left = span.at, span.size
    while left:
        try:
            done = os.copy_file_range(src, dst, left, at)
        except (AttributeError, OSError):  # no such call here, or not between these files
            done = 0
        if not done:
            data = os.pread(src, min(left, 1 << 22), at)
            if not data:
                raise Damaged("the view ended while it was copied")
            _write_all(dst, data)
            done = len(data)
        at, left = at + done, left - done


def _seal(body: bytes) -> bytes:
    """A line's seal: 128 bits of the sha256 of its body, kept in its chunk's index."""
    return hashlib.sha256(body).hexdigest()[:_SEAL].encode()


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

    def __init__(self, read: Any, key: str, settings: str, count: int, table: bytes,
                 body_at: int, end: int) -> None:
        self._read = read  # (offset, size) -> bytes
        self.key, self.settings = key, settings
        self.count = count
        self._table = table  # checked against the header's sha256
        self._index_at = body_at - count * _INDEX_LINE
        self._body_at, self._end = body_at, end
        self.firsts = [int(table[at:at + 10]) for at in range(0, len(table), _TABLE_LINE)]
        self._starts = [int(table[at + 11:at + 23])
                        for at in range(0, len(table), _TABLE_LINE)]
        self._chunks: dict[int, list[tuple[int, int, bytes]]] = {}

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
            magic_a, magic_b, version, at, digest, count, table_sha, table_at, body_at = fields
            n, t, b = int(count), int(table_at), int(body_at)
        except ValueError:
            raise Damaged("a header of another form") from None
        if hashlib.sha256(" ".join(fields).encode()).hexdigest() != check:
            raise Damaged("the header's check fails")
        if (f"{magic_a} {magic_b}", version) != (MAGIC, __version__):
            raise Damaged("another format or squad version")
        if at != key or digest != settings:
            raise Damaged("stale: another log or other settings")
        table_size = (n + CHUNK - 1) // CHUNK * _TABLE_LINE
        if t != len(line) + 1 or b != t + table_size + n * _INDEX_LINE or b > end:
            raise Damaged("the header's offsets do not fit the file")
        table = read(t, table_size)
        if hashlib.sha256(table).hexdigest() != table_sha:
            raise Damaged("the chunk table fails its check")
        try:
            view = cls(read, key, settings, n, table, b, end)
        except ValueError:
            raise Damaged("a damaged chunk table") from None
        starts = view._starts
        if starts[:1] not in ([], [0]) or any(a > z for a, z in itertools.pairwise(starts)) \
                or (starts and b + starts[-1] > end):
            raise Damaged("the chunk table's offsets do not fit the file")
        return view

    def _chunk(self, c: int) -> list[tuple[int, int, bytes]]:
        """Chunk c's index: (id, absolute offset, seal) per row, checked against the table."""
        found = self._chunks.get(c)
        if found is not None:
            return found
        start = c * CHUNK
        size = (min(self.count, start + CHUNK) - start) * _INDEX_LINE
        raw = self._read(self._index_at + start * _INDEX_LINE, size)
        if len(raw) != size or hashlib.sha256(raw).hexdigest().encode() \
                != self._table[c * _TABLE_LINE + 24:c * _TABLE_LINE + 88]:
            raise Damaged(f"chunk {c} of the index fails its check")
        base = self._body_at + self._starts[c]
        try:
            rows = [(int(raw[at:at + 10]), base + int(raw[at + 11:at + 23]),
                     raw[at + 24:at + 24 + _SEAL]) for at in range(0, size, _INDEX_LINE)]
        except ValueError:
            raise Damaged(f"chunk {c} of the index is damaged") from None
        self._chunks[c] = rows
        return rows

    def _stop(self, position: int) -> int:
        """Where the line at `position` ends (after its newline)."""
        if position + 1 >= self.count:
            return self._end
        if (position + 1) % CHUNK:
            return self._chunk(position // CHUNK)[(position + 1) % CHUNK][1]
        return self._body_at + self._starts[(position + 1) // CHUNK]

    def _lines(self, start: int, stop: int) -> Iterator[tuple[int, int, bytes]]:
        """(position, id, body) of the lines at start..stop-1, read in one piece, each
        checked against its seal."""
        if start >= stop:
            return
        spans = [self._chunk(p // CHUNK)[p % CHUNK] for p in range(start, stop)]
        first, last = spans[0][1], self._stop(stop - 1)
        if not self._body_at <= first <= last <= self._end:
            raise Damaged("index offsets out of order")
        chunk = self._read(first, last - first)
        if len(chunk) != last - first:
            raise Damaged("the body is torn")
        ends = [at for _, at, _ in spans[1:]] + [last]
        for position, (record_id, at, seal), end in zip(range(start, stop), spans, ends,
                                                        strict=True):
            line = chunk[at - first:end - first]
            if not line.endswith(b"\n") or _seal(line[:-1]) != seal:
                raise Damaged(f"line {position} fails its check")
            yield position, record_id, line[:-1]

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
        return [self.row_of(body, position, record_id)
                for position, record_id, body in self._lines(max(0, start), self.count)]

    def bodies(self) -> list[tuple[int, bytes]]:
        """Every line's (id, body) in log order, each checked: what a file is made of."""
        return [(record_id, body) for _, record_id, body in self._lines(0, self.count)]

    def get(self, record_id: int) -> Row | None:
        """The row of `record_id` (the last one, if a broken log repeats an id): found
        through the chunk table, checked whole on opening, and one chunk of the index,
        checked whole when read, so an absence is as sure as a find. A few small reads at
        any length."""
        c = bisect.bisect_right(self.firsts, record_id) - 1
        if c < 0:
            return None
        rows = self._chunk(c)
        at = bisect.bisect_right(rows, record_id, key=_first) - 1
        if at < 0 or rows[at][0] != record_id:
            return None
        position = c * CHUNK + at
        (_, _, body), = self._lines(position, position + 1)
        return self.row_of(body, position, record_id)

    def chunk_rows(self, c: int) -> list[tuple[int, bytes, bytes]]:
        """Chunk c's rows as (id, body, seal), each checked: what `extend` makes again."""
        start = c * CHUNK
        stop = min(self.count, start + CHUNK)
        seals = [seal for _, _, seal in self._chunk(c)]
        return [(record_id, body, seal) for (_, record_id, body), seal
                in zip(self._lines(start, stop), seals, strict=True)]

    def chunk_as_is(self, c: int) -> _Chunk:
        """Chunk c as spans of this file, unread: what `extend` copies."""
        start = c * CHUNK
        count = min(self.count, start + CHUNK) - start
        body_start = self._body_at + self._starts[c]
        body_stop = (self._body_at + self._starts[c + 1] if c + 1 < len(self.firsts)
                     else self._end)
        row = self._table[c * _TABLE_LINE:(c + 1) * _TABLE_LINE]
        return _Chunk(self.firsts[c], count,
                      _Span(self._index_at + start * _INDEX_LINE, count * _INDEX_LINE),
                      _Span(body_start, body_stop - body_start), body_stop - body_start,
                      row[24:88])

    def read_all(self) -> bytes:
        """The whole file (for `extend` on bytes, which copies spans of it)."""
        data: bytes = self._read(0, self._end)
        return data


def _first(row: tuple[int, int, bytes]) -> int:
    return row[0]
