"""A derived, per-commit answer file for `squad log` and `squad show`, read without parsing.

Answering `log` or `show` from the records means loading the whole log (pydantic, YAML or
the parsed-log cache, GitPython, the status fold): a cost that grows with the log and an
import bill larger than the answer. This file holds, for one commit, everything those two
commands print: per record its JSON form with its current status and superseded-by list,
the status shown in the table, its path and blob id, and its edges in the decision graph
(what it names and what names it). Reading it needs only `json` and `hashlib`, and a
`show` reads one line, found through a fixed-width index: the same cost at 100 records as
at 100,000. `log` without filters reads the newest page only.

It lives in the worktree's own git dir (`.git/squad/log-view`, or
`.git/worktrees/<name>/squad/log-view`), never in the working tree, keyed by the commit it
describes (HEAD when it was built) and squad's version; any other commit or version makes it
stale, and the command that finds it stale loads the log as before and rewrites it (one
temporary file and a rename: a reader sees the old file or the new one). Deleting it costs
one slower command.

Form: a header line `squad-log-view 1 <version> <commit> <settings digest> <count>
<index sha256> <index offset> <body offset> <check>` (check: sha256 of the fields before
it); then `count`
index lines `<id:010d> <offset:012d>\\n` in log order (ids never decrease); then one body
line per record, `<sha256> <json>\\n`, the sha256 covering the commit and the JSON, and the
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
from squad.graph import all_edges

if TYPE_CHECKING:
    from squad.ledger import Ledger

MAGIC = "squad-log-view 1"
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
    blob: str  # its git blob id at the commit
    graph: list[list[Any]]  # [label, [ids]] for the non-empty graph groups, in order

    @property
    def id(self) -> int:
        return int(self.data["id"])


# ---- building ---------------------------------------------------------------------------

def build(ledger: Ledger, listing: dict[str, str], commit: str, settings: str) -> bytes:
    """The view of `ledger` (read at `commit`; `listing`: path in decisions/ -> blob id)."""
    status, later = ledger.statuses(), ledger.superseded_by()
    edges: dict[int, dict[str, list[int]]] = {}

    def add(record_id: int, group: str, other: int) -> None:
        edges.setdefault(record_id, {}).setdefault(group, []).append(other)

    for edge in all_edges(ledger):
        forward, backward = FORWARD.get(edge.kind), BACKWARD.get(edge.kind)
        if forward is not None and backward is not None:
            add(edge.src, forward, edge.dst)
            add(edge.dst, backward, edge.src)
    lines: list[bytes] = []
    index: list[tuple[int, int]] = []
    offset = 0
    for position, entry in enumerate(ledger.entries):
        record = entry.record
        shown = status.get(record.id) or (f"{record.kind} {record.target:04d}"
                                          if record.target is not None else record.kind)
        data = {**record.model_dump(mode="json"),
                "current_status": status.get(record.id, record.kind),
                "superseded_by": later.get(record.id, [])}
        groups = edges.get(record.id, {})
        body = json.dumps([position, record.id, shown, record.date.strftime("%Y-%m-%d %H:%M"),
                           entry.name, listing[entry.name],
                           [[g, groups[g]] for g in GROUPS if g in groups], data],
                          separators=(",", ":")).encode()
        line = _seal(commit, body) + b" " + body + b"\n"
        index.append((record.id, offset))
        lines.append(line)
        offset += len(line)
    index_bytes = b"".join(b"%010d %012d\n" % pair for pair in index)
    fields = (f"{MAGIC} {__version__} {commit} {settings} {len(lines)} "
              f"{hashlib.sha256(index_bytes).hexdigest()}")
    # offsets of the index and body depend on the header's own length: fix it by padding
    head_len = len(fields) + 2 * 13 + 65 + 1
    tail = f" {head_len:012d} {head_len + len(index_bytes):012d}"
    check = hashlib.sha256((fields + tail).encode()).hexdigest()
    header = f"{fields}{tail} {check}\n".encode()
    assert len(header) == head_len
    return header + index_bytes + b"".join(lines)


def _seal(commit: str, body: bytes) -> bytes:
    return hashlib.sha256(commit.encode() + b"\0" + body).hexdigest().encode()


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

    def __init__(self, read: Any, commit: str, count: int, index_at: int, body_at: int,
                 end: int, index_sha: str) -> None:
        self._read = read  # (offset, size) -> bytes
        self.commit = commit
        self.count = count
        self._index_at, self._body_at, self._end = index_at, body_at, end
        self._index_sha = index_sha

    @classmethod
    def of_bytes(cls, data: bytes, commit: str, settings: str) -> View:
        return cls._open(lambda at, size: data[at:at + size], len(data), commit, settings)

    @classmethod
    def of_file(cls, fd: int, commit: str, settings: str) -> View:
        return cls._open(lambda at, size: os.pread(fd, size, at), os.fstat(fd).st_size,
                         commit, settings)

    @classmethod
    def _open(cls, read: Any, end: int, commit: str, settings: str) -> View:
        """The view, if it is for `commit` and these settings; None-like faults raise."""
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
        if at != commit or digest != settings:
            raise Damaged("stale: another commit or other settings")
        n, i, b = int(count), int(index_at), int(body_at)
        if i != len(line) + 1 or b != i + n * _INDEX_LINE or b > end:
            raise Damaged("the header's offsets do not fit the file")
        return cls(read, commit, n, i, b, end, index_sha)

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
        if _seal(self.commit, body) != seal:
            raise Damaged(f"line {position} fails its check")
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
