"""The drops committed on a branch, kept so that the coordinator does not rescan history.

The coordinator must know every `(Squad-Drop, Squad-Drop-Hash)` pair committed on the
branch (a drop found again after a crash is removed, not committed twice). Reading them is
one `git log` over the whole history: a cost that grows with the log, paid by every run and
every ingest. This file holds the pairs of one commit's history, so the next load reads only
the commits added since.

It lives in the common git dir (`.git/squad/drops`), never in the working tree, and is only
derived: deleting it costs one full scan. Form: a header line `squad-drops 1 <commit>
<count> <sha256 of the rest>`, then one `<name> <hash>` line per pair, sorted (trailer
values hold no spaces or newlines). It is used only when its header and body check out and
its commit is an ancestor of the commit asked about (a rewritten or switched branch gets a
full scan): a pair of another history would make the coordinator remove a drop it never
committed. Like the other caches it is as trustworthy as `.git` itself.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from squad.errors import SquadError
from squad.logcache import cache_path
from squad.logview import read_regular, replace_whole

if TYPE_CHECKING:
    from squad.vcs import Repository

MAGIC = "squad-drops 1"
Key = tuple[str, str]


def path_of(repo: Repository) -> Path:
    return cache_path(repo.git_dir).with_name("drops")


def committed(repo: Repository, head: str) -> set[Key]:
    """Every drop key committed in `head`'s history."""
    path = path_of(repo)
    known = _read(path)
    if known is not None and known[0] == head:
        return known[1]
    if known is not None and _ancestor(repo, known[0], head):
        keys = known[1] | repo.drop_keys(head, known[0])
    else:
        keys = repo.drop_keys(head, None)
    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        replace_whole(path, _encode(head, keys))
    return keys


def _ancestor(repo: Repository, older: str, newer: str) -> bool:
    try:
        return repo.is_ancestor(older, newer)
    except SquadError:  # e.g. the cached commit is gone (a rewritten branch, then gc)
        return False


def _encode(head: str, keys: set[Key]) -> bytes:
    body = "".join(f"{name} {value}\n" for name, value in sorted(keys)).encode()
    return f"{MAGIC} {head} {len(keys)} {hashlib.sha256(body).hexdigest()}\n".encode() + body


def _read(path: Path) -> tuple[str, set[Key]] | None:
    """(commit, keys) if the file is whole and sound; None otherwise."""
    try:
        data = read_regular(path)
    except OSError:
        return None
    header, sep, body = data.partition(b"\n")
    try:
        magic_a, magic_b, head, count, check = header.decode("ascii").split(" ")
        lines = body.decode("utf-8").split("\n")[:-1]  # as written: one "\n" per key
    except ValueError:
        return None
    if not sep or f"{magic_a} {magic_b}" != MAGIC or len(head) != 40 \
            or hashlib.sha256(body).hexdigest() != check or str(len(lines)) != count:
        return None
    keys: set[Key] = set()
    for line in lines:
        name, space, value = line.partition(" ")
        if not space or not name or " " in value:
            return None
        keys.add((name, value))
    return head, keys
