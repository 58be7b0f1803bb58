"""A derived answer file for `squad log` and `squad show`, per state of the log, read
without parsing.

Answering `log` or `show` from the records means loading the whole log (pydantic, YAML or
the parsed-log cache, GitPython, the status fold): a cost that grows with the log and an
import bill larger than the answer. This file holds, for one state of the log, everything
those two commands print: per record its JSON form with its current status and
superseded-by list, the status shown in the table, its path and blob id, and its edges in
the decision graph (what it names and what names it). Reading it needs only `json` and
`hashlib`, and a `show` reads the chunk table, one block's index and one line: the same
cost at 100 records as at 100,000 but for the table, 102 bytes per 128 records. `log`
without filters reads the newest page only.

It lives in the worktree's own git dir (`.git/squad/log-view`, or
`.git/worktrees/<name>/squad/log-view`), never in the working tree, keyed by the tree id of
`decisions/` at HEAD when it was built (all the log is), squad's version and the settings
file: a commit that leaves `decisions/` alone (code, a run's log) leaves it fresh; any other
log, version or settings makes it stale, and the command that finds it stale loads the log
as before and rewrites it (one temporary file and a rename). Deleting it costs one slower
command.

Carried over a commit: the coordinator, which holds the log in memory, turns the view of
the log it loaded into the view of the log it committed (`carry`). A line's seal does not
depend on the key, so a line that does not change stays as it is: only the blocks holding
a row the new records change (their targets, what they supersede or take as input) or the
new rows are read, checked and made again, and appended to the file with a new table and
trailer in one write. The other blocks are not read; the new table names them where they
are, with their hashes. Bytes a reader of the old state may read are never written over,
and a reader never reads past the end the file had when it opened it. Once the dead blocks
would outweigh the live ones, the carry lays the file out afresh instead (a new file and a
rename, the kept blocks copied by the kernel). Laid out afresh (`compact`, `extend`), a
carried view is the very bytes a rebuild gives (property tests compare them). A rewrite,
merge or renumber, a commit by plain git, or a view that fails a check is not carried: the
next `log` rebuilds it.

Form: blocks of up to CHUNK rows, each `<id:010d> <offset of its line in the block's
body:012d> <seal>` per row (ids never decrease; the seal: 128 bits of the sha256 of the
line's body), then the rows' body lines, each its JSON, naming its own position and id;
then the chunk table, one line per block in log order, `<first id:010d> <block
offset:012d> <block size:012d> <sha256 of the block's index lines>`; then the trailer, the
last line: `squad-log-view 3 <version> <key> <settings digest> <count> <table offset>
<table sha256> <check>` (check: sha256 of the fields before it). Every byte a reader uses
hangs from the trailer by a chain of hashes: the trailer (which names the key) holds the
table's sha256, the table each block's index hash, a block's index each line's seal. A
reader checks the trailer and the table whole, each block index it uses whole (so an
absence is as sure as a find), and each line it uses against its seal, its position and
its id. A damaged, torn or spliced file, or a line of another state of the log, fails one
of these and is never trusted: the command falls back to the log and rewrites the file.
Like the parsed-log cache it holds data only and is as trustworthy as `.git` itself;
`squad verify` never reads it.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import json
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squad import __version__
from squad.safety import write_new

if TYPE_CHECKING:
    from squad.ledger import Entry, Ledger
    from squad.records import Record

MAGIC = "squad-log-view 3"
NAME = "log-view"
CHUNK = 128  # rows per block, one hash each in the chunk table
_SEAL = 32  # hex digits of a line's seal
_INDEX_LINE = 10 + 1 + 12 + 1 + _SEAL + 1  # "<id:010d> <offset in block:012d> <seal>\n"
# "<first id:010d> <block offset:012d> <block size:012d> <sha256 of its index lines>\n"
_TABLE_LINE = 10 + 1 + 12 + 1 + 12 + 1 + 64 + 1
_TRAILER_MAX = 1024  # the trailer line is shorter: it is looked for in the file's last KiB
_SLACK = 1 << 16  # dead bytes always allowed before a carry lays the file out afresh
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
    blocks = [_Block.made([(rid, body, _seal(body)) for rid, body in bodies[at:at + CHUNK]])
              for at in range(0, len(bodies), CHUNK)]
    return _materialize(_compact(blocks, len(bodies), key, settings), b"")


def extend(old: View, ledger: Ledger, blobs: dict[str, str], key: str) -> bytes:
    """The view of `ledger` for the decisions/ tree `key`, made from `old`, the view of the
    log `ledger` held before its last `len(blobs)` appends (`blobs`: their paths in
    decisions/ -> blob ids), laid out afresh: the same bytes `build` gives (see
    `_carried`)."""
    return _materialize(_compact(old.expanded(_carried(old, ledger, blobs)),
                                 len(ledger.entries), key, old.settings), old.read_all())


def compact(view: View) -> bytes:
    """The view laid out afresh (its blocks in order, no dead bytes): what `build` gives for
    the same log, so a carried file can be compared with a rebuilt one."""
    blocks = view.expanded([range(len(view.firsts))])
    return _materialize(_compact(blocks, view.count, view.key, view.settings),
                        view.read_all())


@dataclass(frozen=True)
class _Span:
    """Bytes of the old file, copied as they are."""

    at: int
    size: int


_Piece = bytes | _Span
# What a carry makes of the old file: blocks made again, and runs of old blocks (their
# numbers) kept where they are.
_Carried = list["_Block | range"]


@dataclass(frozen=True)
class _Block:
    """Up to CHUNK rows as the file holds them: their index lines, then their body lines;
    made anew (bytes) or a span of the old file."""

    first: int  # the id of its first row
    data: _Piece
    size: int
    sha: bytes  # sha256 of its index lines, hex

    @classmethod
    def made(cls, rows: list[tuple[int, bytes, bytes]]) -> _Block:
        """A block of (id, body, seal) rows."""
        index: list[bytes] = []
        offset = 0
        for record_id, body, seal in rows:
            index.append(b"%010d %012d %s\n" % (record_id, offset, seal))
            offset += len(body) + 1
        index_bytes = b"".join(index)
        data = b"".join([index_bytes, *(body + b"\n" for _, body, _ in rows)])
        return cls(rows[0][0], data, len(data), hashlib.sha256(index_bytes).hexdigest().encode())


def _table_line(block: _Block, at: int) -> bytes:
    return b"%010d %012d %012d %s\n" % (block.first, at, block.size, block.sha)


def _tail(table: bytes, count: int, key: str, settings: str, table_at: int) -> bytes:
    """The chunk table and the trailer line after it."""
    fields = (f"{MAGIC} {__version__} {key} {settings} {count} {table_at:012d} "
              f"{hashlib.sha256(table).hexdigest()}")
    return table + f"{fields} {hashlib.sha256(fields.encode()).hexdigest()}\n".encode()


def _compact(blocks: list[_Block], count: int, key: str, settings: str) -> list[_Piece]:
    """The file laid out afresh: every block in log order, the table, the trailer."""
    out: list[_Piece] = []
    table: list[bytes] = []
    at = 0
    for block in blocks:
        table.append(_table_line(block, at))
        at += block.size
        last = out[-1] if out else None
        piece = block.data
        if isinstance(piece, _Span) and isinstance(last, _Span) \
                and last.at + last.size == piece.at:
            out[-1] = _Span(last.at, last.size + piece.size)  # one copy, not many
        else:
            out.append(piece)
    out.append(_tail(b"".join(table), count, key, settings, at))
    return out


def _materialize(pieces: list[_Piece], old: bytes) -> bytes:
    return b"".join(piece if isinstance(piece, bytes) else old[piece.at:piece.at + piece.size]
                    for piece in pieces)


def _carried(old: View, ledger: Ledger, blobs: dict[str, str]) -> _Carried:
    """The blocks of the view of `ledger`, from `old`, the view of its first `old.count`
    records. Only the blocks holding a row the new records change (their targets, what
    they supersede or take as input) or the new rows are made again; every other block is
    kept as it is, unread, with its hash from the old table: a damaged block stays damaged,
    and its readers still find out. What is made again is checked first (`Damaged`): the
    old table against its sha256, each block read against its hash, each of its lines
    against its seal, its ids against the ledger's."""
    entries = ledger.entries
    first = len(entries) - len(blobs)
    if first != old.count or first < 0:
        raise Damaged("the view is not of the log before these records")
    if [entry.record.id for entry in entries[:first:CHUNK]] != old.firsts:
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
        touched.add(first // CHUNK)  # the last block, which the new rows fill up
    rows: dict[int, tuple[int, bytes, bytes]] = {}  # old position -> (id, body, seal)
    for c in sorted(touched):
        for position, row in enumerate(old.block_rows(c), start=c * CHUNK):
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
    out: _Carried = []
    kept = 0  # the first old block not yet placed
    for c in [*sorted(touched), *range(len(old.firsts), (len(entries) + CHUNK - 1) // CHUNK)]:
        if c > kept:
            out.append(range(kept, min(c, len(old.firsts))))
        out.append(_Block.made([rows[at] for at in
                                range(c * CHUNK, min(len(entries), (c + 1) * CHUNK))]))
        kept = c + 1
    if kept < len(old.firsts):
        out.append(range(kept, len(old.firsts)))
    return out


def _id_of(entry: Entry) -> int:
    return entry.record.id


def carry(git_dir: Path, old_key: str, key: str, settings: str, ledger: Ledger,
          blobs: dict[str, str]) -> bool:
    """After a commit that appended records: turn the view of the log before it (`old_key`,
    if that is the view on file and it checks out) into the view of `ledger` at `key`, so
    the first `log` or `show` after the commit reads a fresh view instead of loading the
    log. The blocks made again, a new table and a new trailer are appended to the file in
    one write: what a reader of the old state reads is never written over, and the old
    blocks are not read at all. Once the dead blocks outweigh the live ones the file is
    laid out afresh instead (`_relaid`). Returns whether it did; a missing, stale or
    damaged view is left for the next `log` to rebuild, and a view that cannot be written
    only costs speed."""
    path = view_path(git_dir)
    try:
        fd = open_regular(path)
    except OSError:
        return False
    try:
        old = View.of_file(fd, old_key, settings)
        return _append(path, fd, old, _carried(old, ledger, blobs), len(ledger.entries), key)
    except (Damaged, OSError):
        return False
    finally:
        os.close(fd)


def _append(path: Path, fd: int, old: View, carried: _Carried, count: int, key: str) -> bool:
    """Append the new blocks, table and trailer to the file open as `fd` (the view `old`),
    the kept blocks' lines of the table copied from the old one; or lay the file out
    afresh when the dead bytes would outweigh the live ones. Only to the very file read,
    with no other name: a file replaced, grown, linked or made a symlink since is left
    alone (False)."""
    table: list[bytes] = []
    new: list[bytes] = []
    at = end = old.end
    live = 0  # the bytes of the blocks the new table names
    for item in carried:
        if isinstance(item, range):
            table.append(old.table_lines(item))
            live += old.sizes(item)
        else:
            assert isinstance(item.data, bytes)
            table.append(_table_line(item, at))
            new.append(item.data)
            at += item.size
            live += item.size
    tail = _tail(b"".join(table), count, key, old.settings, at)
    if at + len(tail) > 2 * (live + len(tail)) + _SLACK:
        _relaid(path, fd, _compact(old.expanded(carried), count, key, old.settings))
        return True
    data = b"".join([*new, tail])
    out = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        mine, theirs = os.fstat(out), os.fstat(fd)
        if (mine.st_ino, mine.st_dev, mine.st_size, mine.st_nlink) \
                != (theirs.st_ino, theirs.st_dev, end, 1):
            return False  # leave it to the next `log`, which replaces it whole
        _write_all(out, data, end)
    finally:
        os.close(out)
    return True


def _relaid(path: Path, src: int, pieces: list[_Piece]) -> None:
    """Replace the file whole (as `replace_whole`), copying the spans from `src` in the
    kernel where it can."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            at = 0
            for piece in pieces:
                if isinstance(piece, bytes):
                    _write_all(dst, piece, at)
                    at += len(piece)
                else:
                    _copy_span(src, dst, piece, at)
                    at += piece.size
        finally:
            os.close(dst)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_all(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


def _copy_span(src: int, dst: int, span: _Span, to: int) -> None:
    """Copy a span of `src` to `dst` at `to`: in the kernel where it can."""
    at, left = span.at, span.size
    while left:
        try:
            done = os.copy_file_range(src, dst, left, at, to)
        except (AttributeError, OSError):  # no such call here, or not between these files
            done = 0
        if not done:
            data = os.pread(src, min(left, 1 << 22), at)
            if not data:
                raise Damaged("the view ended while it was copied")
            _write_all(dst, data, to)
            done = len(data)
        at, left, to = at + done, left - done, to + done


def _seal(body: bytes) -> bytes:
    """A line's seal: 128 bits of the sha256 of its body, kept in its block's index."""
    return hashlib.sha256(body).hexdigest()[:_SEAL].encode()


def save(path: Path, data: bytes) -> None:
    """Replace the file whole; a view that cannot be written only costs speed."""
    with contextlib.suppress(OSError):
        replace_whole(path, data)


def open_regular(path: Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor of `path` if it is a regular file: never blocking on a FIFO, never
    following a symlink when writing; OSError otherwise (a directory, a device), which
    every reader and writer of squad's caches takes as "no cache here"."""
    if flags != os.O_RDONLY:
        flags |= os.O_NOFOLLOW
    fd = os.open(path, flags | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path) -> bytes:
    """The bytes of `path` if it is a regular file (see `open_regular`)."""
    with open(open_regular(path), "rb") as file:
        return file.read()


def replace_whole(path: Path, data: bytes) -> None:
    """Replace the file whole: a reader sees the old file or the new one, never a mix (also
    the parse cache's way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a killed writer's, or anything planted there: never written through
    try:
        write_new(tmp, data, sync=False)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# ---- reading ----------------------------------------------------------------------------

class View:
    """An open view, checked as it is read (`Damaged` on any fault)."""

    def __init__(self, read: Any, key: str, settings: str, count: int, table: bytes,
                 table_at: int, end: int) -> None:
        self._read = read  # (offset, size) -> bytes
        self.key, self.settings = key, settings
        self.count, self.end, self._table_at = count, end, table_at
        self._table = table  # checked against the trailer's sha256
        self.firsts = [int(table[at:at + 10]) for at in range(0, len(table), _TABLE_LINE)]
        self._blocks: dict[int, list[tuple[int, int, bytes]]] = {}

    def _place(self, c: int) -> tuple[int, int]:
        """Where block c is and its size, from the table, if they fit the file."""
        line = self._table[c * _TABLE_LINE:(c + 1) * _TABLE_LINE]
        try:
            at, size = int(line[11:23]), int(line[24:36])
        except ValueError:
            raise Damaged("a damaged chunk table") from None
        if at + size > self._table_at or size < self._rows_in(c) * _INDEX_LINE:
            raise Damaged("the chunk table's offsets do not fit the file")
        return at, size

    @classmethod
    def of_bytes(cls, data: bytes, key: str, settings: str) -> View:
        return cls._open(lambda at, size: data[at:at + size], len(data), key, settings)

    @classmethod
    def of_file(cls, fd: int, key: str, settings: str) -> View:
        """The view in the file open as `fd`, as far as it reaches now: bytes appended
        later (a carry's) are not read."""
        return cls._open(lambda at, size: os.pread(fd, size, at), os.fstat(fd).st_size,
                         key, settings)

    @classmethod
    def _open(cls, read: Any, end: int, key: str, settings: str) -> View:
        """The view, if it is of the decisions/ tree `key` with these settings; else
        `Damaged`."""
        tail = read(max(0, end - _TRAILER_MAX), min(end, _TRAILER_MAX))
        _, sep, line = tail[:-1].rpartition(b"\n")
        if not tail.endswith(b"\n") or (not sep and end > len(tail)):
            raise Damaged("no trailer")
        try:
            *fields, check = line.decode("ascii").split(" ")
            magic_a, magic_b, version, at, digest, count, table_at, table_sha = fields
            n, t = int(count), int(table_at)
        except ValueError:
            raise Damaged("a trailer of another form") from None
        if hashlib.sha256(" ".join(fields).encode()).hexdigest() != check:
            raise Damaged("the trailer's check fails")
        if (f"{magic_a} {magic_b}", version) != (MAGIC, __version__):
            raise Damaged("another format or squad version")
        if at != key or digest != settings:
            raise Damaged("stale: another log or other settings")
        size = (n + CHUNK - 1) // CHUNK * _TABLE_LINE
        if n < 0 or t < 0 or t + size != end - len(line) - 1:
            raise Damaged("the trailer's offsets do not fit the file")
        table = read(t, size)
        if hashlib.sha256(table).hexdigest() != table_sha:
            raise Damaged("the chunk table fails its check")
        try:
            return cls(read, key, settings, n, table, t, end)
        except ValueError:
            raise Damaged("a damaged chunk table") from None

    def _rows_in(self, c: int) -> int:
        return min(self.count, (c + 1) * CHUNK) - c * CHUNK

    def _index(self, c: int) -> list[tuple[int, int, bytes]]:
        """Block c's index: (id, offset in the file, seal) per row, checked against the
        table."""
        found = self._blocks.get(c)
        if found is not None:
            return found
        size = self._rows_in(c) * _INDEX_LINE
        block_at = self._place(c)[0]
        raw = self._read(block_at, size)
        if len(raw) != size or hashlib.sha256(raw).hexdigest().encode() \
                != self._table[c * _TABLE_LINE + 37:c * _TABLE_LINE + 101]:
            raise Damaged(f"block {c} of the view fails its check")
        base = block_at + size
        try:
            rows = [(int(raw[at:at + 10]), base + int(raw[at + 11:at + 23]),
                     raw[at + 24:at + 24 + _SEAL]) for at in range(0, size, _INDEX_LINE)]
        except ValueError:
            raise Damaged(f"block {c} of the view is damaged") from None
        self._blocks[c] = rows
        return rows

    def _lines(self, start: int, stop: int) -> Iterator[tuple[int, int, bytes]]:
        """(position, id, body) of the lines at start..stop-1, read a block at a time, each
        checked against its seal."""
        while start < stop:
            c = start // CHUNK
            upto = min(stop, (c + 1) * CHUNK)
            index = self._index(c)
            spans = index[start - c * CHUNK:upto - c * CHUNK]
            block_at, block_size = self._place(c)
            block_end = block_at + block_size
            last = index[upto - c * CHUNK][1] if upto < (c + 1) * CHUNK \
                and upto < self.count else block_end
            first = spans[0][1]
            if not block_at <= first <= last <= block_end:
                raise Damaged(f"block {c}'s offsets out of order")
            chunk = self._read(first, last - first)
            if len(chunk) != last - first:
                raise Damaged("the view is torn")
            ends = [at for _, at, _ in spans[1:]] + [last]
            for position, (record_id, at, seal), end in zip(range(start, upto), spans, ends,
                                                            strict=True):
                line = chunk[at - first:end - first]
                if not line.endswith(b"\n") or _seal(line[:-1]) != seal:
                    raise Damaged(f"line {position} fails its check")
                yield position, record_id, line[:-1]
            start = upto

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
        through the chunk table, checked whole on opening, and one block's index, checked
        whole when read, so an absence is as sure as a find. A few small reads at any
        length."""
        c = bisect.bisect_right(self.firsts, record_id) - 1
        if c < 0:
            return None
        index = self._index(c)
        at = bisect.bisect_right(index, record_id, key=_first) - 1
        if at < 0 or index[at][0] != record_id:
            return None
        position = c * CHUNK + at
        (_, _, body), = self._lines(position, position + 1)
        return self.row_of(body, position, record_id)

    def block_rows(self, c: int) -> list[tuple[int, bytes, bytes]]:
        """Block c's rows as (id, body, seal), each checked: what `extend` makes again."""
        seals = [seal for _, _, seal in self._index(c)]
        lines = self._lines(c * CHUNK, c * CHUNK + self._rows_in(c))
        return [(record_id, body, seal)
                for (_, record_id, body), seal in zip(lines, seals, strict=True)]

    def expanded(self, carried: _Carried) -> list[_Block]:
        """Every block, those kept as spans of this file, unread: what a relay copies."""
        out: list[_Block] = []
        for item in carried:
            if not isinstance(item, range):
                out.append(item)
                continue
            for c in item:
                at, size = self._place(c)
                sha = self._table[c * _TABLE_LINE + 37:c * _TABLE_LINE + 101]
                out.append(_Block(self.firsts[c], _Span(at, size), size, sha))
        return out

    def table_lines(self, blocks: range) -> bytes:
        """The table's lines of these blocks, as they are: what an append keeps."""
        return self._table[blocks.start * _TABLE_LINE:blocks.stop * _TABLE_LINE]

    def sizes(self, blocks: range) -> int:
        """The bytes these blocks hold."""
        try:
            return sum(int(self._table[at + 24:at + 36])
                       for at in range(blocks.start * _TABLE_LINE,
                                       blocks.stop * _TABLE_LINE, _TABLE_LINE))
        except ValueError:
            raise Damaged("a damaged chunk table") from None

    def read_all(self) -> bytes:
        """The whole file as far as this view reaches (for the spans of `extend`)."""
        data: bytes = self._read(0, self.end)
        return data


def _first(row: tuple[int, int, bytes]) -> int:
    return row[0]
