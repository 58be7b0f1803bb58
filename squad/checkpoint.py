"""The verified point: what the last full check of one `decisions/` tree established.

Loading a log to commit on top of it is a check (`Workspace.checked`): every cached parse
must reproduce the committed index pages, the newest record is parsed from git, and the
whole tree is listed. At 10,000 records that costs a few hundred milliseconds, paid again
by every run and every ingest although the log is, most times, exactly the tree that the
coordinator checked (or wrote itself) the time before. A tree id names every byte below it,
so what a check found for one tree holds for as long as the tree is the same: this file
keeps it, keyed by that id.

It holds the tree id, the listing (path inside decisions/ -> blob id of every record and
page) and, per record, the sha256 of the parsed-log cache entry that the check vouched for
(`logcache`): a later load takes exactly those entries, or none. It is written only after a
check passed (pages vouched, or records parsed from git), or by the coordinator after its own
commits on top of a checked log, whose records it rendered and parsed back itself.

Like the other caches it lives in the common git dir (`.git/squad/checked`), never in the
working tree, and is only derived: deleting it costs one full check. A file with another
version or a damaged body is ignored (and replaced by the next check); one of another tree
serves only to spare that check the pages of folders whose entries it vouched for under the
same paths. `squad verify` never reads it: a full verify stays a full check.

The coordinator puts a point on file at the end of every session that committed. Writing the
whole point (a JSON dump of every path and check, 19 MB at 100,000 records) would make that
cost grow with the log, so a session appends only what it changed: the file is a base, then
one line per session. Form: a header `squad-checked 3 <squad version> <tree id> <body size>
<seal>`, the body (one JSON object `{"files": {path: blob}, "checks": {blob: entry
sha256}}`, read and written by the C codec) and a newline; then per session `<tree id>
<seal> <delta>` where the delta is a JSON object of the same form holding the paths and
checks the session added or changed. Seals chain: the base's is the sha256 of its tree id
and body, a line's the sha256 of the seal before it, its tree id and its delta. A reader
checks the base and every line's seal, applies the deltas in order, and believes the result
for the tree id of the last whole line only; a torn last line (no newline) is left out, and
any other fault (a damaged, truncated or spliced base or line) sets the whole file aside. A
file cut at the end of a line is the point of that line's tree, which it was checked at.

A line is appended only to the very file this process last read or wrote whole and sound, as
it was then (same inode and size, its last line still the one it read, naming the tree the
session started on, one name, not a symlink), in one write, under an exclusive lock on that
file: another command that replaced the file (after a full check of its own) leaves the
append to go to a file nobody reads any more, and two appenders never chain from the same
line. Anything else writes the point whole (a new file and a rename), as does a session whose
appended lines would outweigh the base (the file is then laid out afresh).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from squad import __version__
from squad.logcache import cache_path
from squad.logview import open_regular, replace_whole

if TYPE_CHECKING:
    from squad.vcs import Repository

MAGIC = f"squad-checked 3 {__version__}"
_SLACK = 1 << 16  # appended bytes always allowed before the point is written whole again


@dataclass(frozen=True)
class Point:
    """A checked `decisions/` tree: its id, its listing, and the cache entries vouched for."""

    tree: str
    files: dict[str, str]  # path inside decisions/ -> blob id (records and pages)
    checks: dict[str, str]  # record blob id -> sha256 of the log cache entry vouched for


@dataclass(frozen=True)
class _Seen:
    """The file as this process last read or wrote it, whole and sound: an append goes
    only to that file as it was then."""

    dev: int
    ino: int
    end: int  # its size, up to the end of its last whole line
    base: int  # the size of its base (header, body and newline)
    tail_at: int  # where its last line (or the header) starts
    tail: bytes  # that line's first bytes: "<tree> <seal> ", or the whole header line
    tree: str
    seal: str


_seen: dict[str, _Seen] = {}  # path -> the file there as this process last saw it


def path_of(repo: Repository) -> Path:
    return cache_path(repo.git_dir).with_name("checked")


def read(repo: Repository, tree: str | None) -> Point | None:
    """The verified point for `tree`, if one is on file, whole and of this squad version."""
    return read_any(repo, tree) if tree is not None else None


def read_any(repo: Repository, tree: str | None = None) -> Point | None:
    """The verified point on file, whole and of this squad version, for `tree` or (None)
    whatever tree it was checked at: the entries it names were vouched for under its paths,
    which a check of a later tree need not vouch for again (see `Workspace.checked`)."""
    path = path_of(repo)
    try:  # a regular file only (no wait on a FIFO), never through a symlink
        fd = open_regular(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        data = _read_all(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    found = parse(data)
    if found is None:
        return None
    point, seen = found
    _seen[str(path)] = _Seen(info.st_dev, info.st_ino, *seen)
    return point if tree is None or point.tree == tree else None


def parse(data: bytes) -> tuple[Point, tuple[int, int, int, bytes, str, str]] | None:
    """The point a file's bytes hold, and where its base and last whole line end, where
    that line starts, its first bytes, tree and seal; None if any part fails its check."""
    header, sep, rest = data.partition(b"\n")
    try:
        magic_a, magic_b, version, tree, size, seal = header.decode("ascii").split(" ")
        body = rest[:int(size)]
    except ValueError:
        return None
    if not sep or f"{magic_a} {magic_b} {version}" != MAGIC or len(body) != int(size) \
            or rest[len(body):len(body) + 1] != b"\n" or _seal(tree, body) != seal:
        return None
    facts = _facts(body)
    if facts is None:
        return None
    files, checks = facts
    at = base = len(header) + 1 + len(body) + 1
    tail_at, tail = 0, header + b"\n"
    while (stop := data.find(b"\n", at)) >= 0:  # a torn last line (no newline) is left out
        line = data[at:stop]
        try:
            raw_tree, raw_seal, delta = line.split(b" ", 2)
            tree, found = raw_tree.decode("ascii"), raw_seal.decode("ascii")
        except ValueError:
            return None
        if _seal(tree, delta, seal) != found or (facts := _facts(delta)) is None:
            return None
        files.update(facts[0])
        checks.update(facts[1])
        seal, tail_at, tail = found, at, line[:len(raw_tree) + len(raw_seal) + 2]
        at = stop + 1
    return Point(tree, files, checks), (at, base, tail_at, tail, tree, seal)


def _facts(body: bytes) -> tuple[dict[str, str], dict[str, str]] | None:
    """The files and checks a body or delta holds, if it is of that form."""
    try:
        facts: Any = json.loads(body)
        files, checks = facts["files"], facts["checks"]
    except (ValueError, TypeError, KeyError):
        return None
    if type(files) is not dict or type(checks) is not dict \
            or not all(type(value) is str for value in files.values()) \
            or not all(type(value) is str for value in checks.values()):
        return None
    return files, checks


def _seal(tree: str, body: bytes, before: str = "") -> str:
    """The base's seal (no seal before it), or a line's, chained to the one before."""
    return hashlib.sha256(f"{before} {tree} ".encode("ascii") + body).hexdigest()


def _body(files: dict[str, str], checks: dict[str, str]) -> bytes:
    return json.dumps({"files": files, "checks": checks}, separators=(",", ":")).encode()


def write(repo: Repository, point: Point) -> None:
    """Put `point` on file whole, in place of the one before (a cache that cannot be
    written is only slower)."""
    path = path_of(repo)
    body = _body(point.files, point.checks)
    seal = _seal(point.tree, body)
    header = f"{MAGIC} {point.tree} {len(body)} {seal}\n".encode("ascii")
    data = header + body + b"\n"
    with contextlib.suppress(OSError):
        _seen.pop(str(path), None)
        replace_whole(path, data)
        info = os.stat(path, follow_symlinks=False)
        if stat.S_ISREG(info.st_mode) and info.st_size == len(data):
            # another writer's file of this very size fails the header's comparison
            _seen[str(path)] = _Seen(info.st_dev, info.st_ino, len(data), len(data), 0,
                                     header, point.tree, seal)


def extend(repo: Repository, since: str | None, delta: Point,
           whole: Callable[[], Point]) -> None:
    """Put on file the point `whole()` of the tree `delta.tree`, checked by a session that
    started on the point of tree `since` and changed (added) only the paths and checks in
    `delta`: one appended line if the file is the one this process last saw, with that
    point, and the lines appended stay smaller than the base; else the whole point."""
    path = path_of(repo)
    with contextlib.suppress(OSError):
        if since is not None and _append(path, since, delta):
            return
    write(repo, whole())


def _append(path: Path, since: str, delta: Point) -> bool:
    """Append `delta` as one line to the file at `path`, if it is, as this process last
    saw it, the point of `since`; whether it did."""
    seen = _seen.pop(str(path), None)  # whatever happens below, a fresh look is needed
    if seen is None or seen.tree != since:
        return False
    body = _body(delta.files, delta.checks)
    seal = _seal(delta.tree, body, seen.seal)
    line = f"{delta.tree} {seal} ".encode("ascii") + body + b"\n"
    if seen.end - seen.base + len(line) > max(seen.base, _SLACK):
        return False  # laid out afresh: a reader would parse more lines than base
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another appender waits, then finds the file grown
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 \
                or (info.st_dev, info.st_ino, info.st_size) != (seen.dev, seen.ino, seen.end) \
                or os.pread(fd, len(seen.tail), seen.tail_at) != seen.tail:
            return False
        if os.write(fd, line) != len(line):
            return False  # a torn line: left out by readers, and the next seal writes whole
    finally:
        os.close(fd)
    _seen[str(path)] = _Seen(seen.dev, seen.ino, seen.end + len(line), seen.base, seen.end,
                             line[:len(delta.tree) + len(seal) + 2], delta.tree, seal)
    return True


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 22):
        chunks.append(chunk)
    return b"".join(chunks)
