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
working tree, and is only derived: deleting it costs one full check. Form: a header line
`squad-checked 2 <squad version> <tree id> <sha256 of the rest>`, then one JSON object,
`{"files": {path: blob}, "checks": {blob: entry sha256}}` (JSON, so that 10,000 records are
written and read back by the C codec: the coordinator writes it at the end of every session
that committed). A file with another version or a damaged body is ignored (and replaced by
the next check); one of another tree serves only to spare that check the pages of folders
whose entries it vouched for under the same paths. `squad verify` never reads it: a full
verify stays a full check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from squad import __version__
from squad.logcache import cache_path
from squad.logview import replace_whole

if TYPE_CHECKING:
    from squad.vcs import Repository

MAGIC = f"squad-checked 2 {__version__}"


@dataclass(frozen=True)
class Point:
    """A checked `decisions/` tree: its id, its listing, and the cache entries vouched for."""

    tree: str
    files: dict[str, str]  # path inside decisions/ -> blob id (records and pages)
    checks: dict[str, str]  # record blob id -> sha256 of the log cache entry vouched for


def path_of(repo: Repository) -> Path:
    return cache_path(repo.git_dir).with_name("checked")


def read(repo: Repository, tree: str | None) -> Point | None:
    """The verified point for `tree`, if one is on file, whole and of this squad version."""
    return read_any(repo, tree) if tree is not None else None


def read_any(repo: Repository, tree: str | None = None) -> Point | None:
    """The verified point on file, whole and of this squad version, for `tree` or (None)
    whatever tree it was checked at: the entries it names were vouched for under its paths,
    which a check of a later tree need not vouch for again (see `Workspace.checked`)."""
    try:
        data = path_of(repo).read_bytes()
    except OSError:
        return None
    header, sep, body = data.partition(b"\n")
    try:
        magic, found, check = header.decode("ascii").rsplit(" ", 2)
    except ValueError:
        return None
    if not sep or magic != MAGIC or (tree is not None and found != tree) \
            or hashlib.sha256(body).hexdigest() != check:
        return None
    try:
        facts = json.loads(body)
        files, checks = facts["files"], facts["checks"]
    except (ValueError, TypeError, KeyError):
        return None
    if type(files) is not dict or type(checks) is not dict \
            or not all(type(value) is str for value in files.values()) \
            or not all(type(value) is str for value in checks.values()):
        return None
    return Point(found, files, checks)


def write(repo: Repository, point: Point) -> None:
    """Put `point` on file in place of the one before (a cache that cannot be written is
    only slower)."""
    body = json.dumps({"files": point.files, "checks": point.checks},
                      separators=(",", ":")).encode("utf-8")
    header = f"{MAGIC} {point.tree} {hashlib.sha256(body).hexdigest()}\n"
    with contextlib.suppress(OSError):
        replace_whole(path_of(repo), header.encode("ascii") + body)
