"""`squad migrate`: move a flat decision log into folders of a thousand, in one commit.

The commit moves every record (the same blob, so the same bytes, chain digests and ids) from
`decisions/` to the folder of its thousand and replaces the flat index by the folder pages
and the summary (see `squad.layout`). Its `Squad-Layout` trailer tells `squad verify` to
accept it only as that: each record removed from the top of decisions/ must come back,
unchanged, at its place, and nothing else may be added or changed. Like every squad commit
it is written into the object store and the branch moves by compare-and-swap; the working
tree and the user's index then follow as `git checkout` would carry them (other changes
stay). If that last step is cut short, running `squad migrate` again finishes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from squad import layout, safety
from squad.errors import UnsafeRepoError, UsageError
from squad.vcs import Content
from squad.workspace import DECISIONS, Workspace

MESSAGE = "Move the decision log into folders of 1,000 records (squad migrate)"


@dataclass
class MigrateReport:
    outcome: Literal["migrated", "finished", "already"]
    moved: int = 0
    commit: str | None = None


def migrate(ws: Workspace) -> MigrateReport:
    repo = ws.repo
    with repo.coordinator_lock():
        safety.check_layout(ws.root)
        repo.ensure_safe()
        head = repo.head()
        if head is None:
            raise UsageError("nothing is committed yet; a new decision log uses folders "
                             "already")
        ledger, shape, files = ws.log(head, checked=True)
        if shape == layout.FOLDERS:
            return _finish(ws, head)
        for path, status in sorted(repo.uncommitted(DECISIONS + "/").items()):
            if layout.owned(path.removeprefix(DECISIONS + "/")):
                raise UnsafeRepoError(f"{path}: has changes that are not committed (git "
                                      f"status {status.strip()}); commit or stash them, then "
                                      "migrate again; nothing was changed")
        changes: dict[str, Content] = {}
        moved = 0
        for name, sha in files.items():
            if layout.is_record(name):
                changes[f"{DECISIONS}/{name}"] = None
                changes[f"{DECISIONS}/{layout.place(name, layout.FOLDERS)}"] = sha
                moved += 1
        if moved:
            for name, page in layout.pages(ledger, layout.FOLDERS, ws.root).items():
                changes[f"{DECISIONS}/{name}"] = page
        else:  # an empty log without an index is in folders (squad.layout.detect)
            changes[f"{DECISIONS}/{layout.PAGE}"] = None
        safety.check_layout(ws.root, {path.rpartition("/")[0] for path in changes})
        key, value = layout.TRAILER
        sha = repo.commit(changes, f"{MESSAGE}\n\n{key}: {value}\n", ws.clock(), head)
        _carry(ws, head, sha)
        return MigrateReport("migrated", moved, sha)


def _finish(ws: Workspace, head: str) -> MigrateReport:
    """Already in folders; if HEAD is the migration and the user's index still holds the
    flat records (the working tree step was cut short), carry it over now."""
    repo = ws.repo
    staged = repo.index_entries(DECISIONS + "/")
    flat = [path for path in staged
            if "/" not in path.removeprefix(DECISIONS + "/")
            and layout.is_record(path.removeprefix(DECISIONS + "/"))]
    found = repo.find_commit(*layout.TRAILER)
    if flat and found is not None and found.sha == head:
        parent = repo.parent_of(head)
        if parent is not None:
            _carry(ws, parent, head)
            return MigrateReport("finished", len(flat), head)
    return MigrateReport("already", 0, head)


def _carry(ws: Workspace, old: str, new: str) -> None:
    repo = ws.repo
    repo.refresh_index()
    refusal = repo.check_out_change(old, new)
    if refusal:
        raise UnsafeRepoError(f"migrated as {new[:12]}, but git could not update the working "
                              f"tree: {refusal}; fix that, then run `squad migrate` again")
