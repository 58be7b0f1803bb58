"""`squad merge REF`: join REF into the current branch as `git merge` would, except that the
decision logs are joined by squad instead of by merging lines.

The trunk's records keep their ids (the trunk is `[repo] trunk` in squad.toml, else the
repository's default branch; a remote's copy of it beats the local one, so `squad merge
origin/main` on `main` keeps what was pushed; when neither side is the trunk, the current
branch's records keep theirs). The other side's records that the trunk side does not hold
yet are appended after the trunk's, in their own order, with new ids, the hash chain
continued and every reference re-pointed; each one that moved says what it was (`was: {id,
commit}`), which `squad verify` checks against the original. A record that lands on the id
and chain link it already had is kept byte for byte. Only the records that move are read or
written: the rest of the log is carried over as git tree entries, and the index gets rows
appended unless a moved record changes the status of an older one.

Everything outside squad's files is merged by git. Without a conflict there, the result is
one two-parent commit written like every squad commit (object store, then a compare-and-swap
of the branch), and the working tree and index follow as `git checkout` would carry them
(the user's other changes stay; git refuses, and nothing changes, if the merge would
overwrite them). With a conflict there, squad leaves git's ordinary conflicted-merge state
(`git merge --no-commit`) with the decision log already joined and staged: resolve, `git add`,
`git commit`, or `git merge --abort` to go back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from squad import layout
from squad.errors import SquadError, UnsafeRepoError, UsageError
from squad.ledger import Entry, Ledger, index_row, render_index
from squad.records import Origin, Record, digest, filename, parse_record, render
from squad.renumber import Origins, id_of, record_names
from squad.workspace import DECISIONS, Workspace

INDEX_NAME = layout.PAGE
PREFIX = DECISIONS + "/"


def owned(path: str) -> bool:
    """Whether a path of the repository is one squad writes in decisions/ (records and
    index pages, in either layout)."""
    return path.startswith(PREFIX) and layout.owned(path[len(PREFIX):])


@dataclass
class Joined:
    """The joined log: every owned file of decisions/ (name -> blob sha)."""

    final: dict[str, str]
    written: dict[str, bytes] = field(default_factory=dict)  # files squad made for it
    renumbered: list[tuple[int, int, str]] = field(default_factory=list)  # old, new, title
    appended: int = 0
    blobs_read: int = 0


@dataclass
class MergeReport:
    ref: str
    outcome: Literal["up-to-date", "fast-forward", "merged", "conflict"]
    commit: str | None = None
    joined: Joined | None = None
    conflicts: list[str] = field(default_factory=list)


def join(ws: Workspace, keep: str, move: str, base: str | None) -> Joined:
    """Join `move`'s log onto `keep`'s (see the module docstring)."""
    repo, origins = ws.repo, Origins(ws.repo)
    keep_all = layout.listing(repo, keep)
    shape = layout.detect(keep_all)
    kept = layout.by_name(keep_all)
    move_all = layout.listing(repo, move)
    if shape == layout.FLAT and layout.detect(move_all) == layout.FOLDERS \
            and layout.records(move_all):
        raise UsageError(f"{DECISIONS}/ of {keep[:12]} is flat and the other side's is in "
                         "folders: run `squad migrate` on the flat side first; nothing was "
                         "changed")
    moving = layout.by_name(move_all)
    based = record_names(repo, base) if base else {}
    # Which decisions the kept side already holds under another id: only its records that
    # are new since the base can be renumbered copies, so only those are read.
    held: dict[tuple[int, str], int] = {}
    for name, blob in kept.items():
        if based.get(name) != blob:
            record = origins.record(blob)
            held[origins.key(record, blob)] = record.id
    ids: dict[int, int] = {}
    todo: list[tuple[Record, str]] = []
    for name, blob in sorted(moving.items(), key=lambda item: id_of(item[0])):
        if kept.get(name) == blob:
            continue
        record = origins.record(blob)
        key = origins.key(record, blob)
        if key in held:
            ids[record.id] = held[key]
        elif kept.get(f"{key[0]:04d}-{name.split('-', 1)[1]}") == key[1]:
            ids[record.id] = key[0]
        else:
            todo.append((record, blob))
    last = max(kept, key=id_of) if kept else None
    prev = digest(origins.data(kept[last])) if last else None
    next_id = id_of(last) + 1 if last else 1
    joined = Joined(final=dict(keep_all))
    entries: list[Entry] = []
    for record, blob in todo:
        ids[record.id] = next_id
        moved = _moved(record, next_id, prev, ids, move)
        if moved == record:
            data = origins.data(blob)
            joined.final[layout.place(filename(record), shape)] = blob
        else:
            text = render(moved, ws.root)
            if parse_record(text) != moved:
                raise SquadError("templates/record.md.j2 renders records that do not parse "
                                 "back; fix the override")
            data = text.encode("utf-8")
            path = layout.place(filename(moved), shape)
            joined.final[path] = repo.store_blob(data)
            joined.written[path] = data
            joined.renumbered.append((record.id, next_id, record.title))
        entries.append(Entry(moved, layout.place(filename(moved), shape), digest(data)))
        prev, next_id = entries[-1].digest, next_id + 1
    joined.appended = len(entries)
    if shape == layout.FOLDERS:
        pages = _pages(ws, keep, entries)
    else:
        index = _index(ws, origins, keep_all, kept, last, entries)
        pages = {INDEX_NAME: index} if index is not None else {}
    for path, page in pages.items():
        joined.final[path] = repo.store_blob(page)
        joined.written[path] = page
    joined.blobs_read = origins.blobs_read
    return joined


def _moved(record: Record, new_id: int, prev: str | None, ids: dict[int, int],
           move: str) -> Record:
    def point(ref: int) -> int:
        return ids.get(ref, ref)

    update = {"id": new_id, "prev": prev, "supersedes": tuple(map(point, record.supersedes)),
              "inputs": tuple(map(point, record.inputs)),
              "target": point(record.target) if record.target is not None else None}
    if all(getattr(record, key) == value for key, value in update.items()):
        return record
    was = record.was or Origin(id=record.id, commit=move)
    return record.model_copy(update={**update, "was": was})


def _index(ws: Workspace, origins: Origins, keep_all: dict[str, str], kept: dict[str, str],
           last: str | None, entries: list[Entry]) -> bytes | None:
    """The index of the joined log, or None when it is the kept side's index unchanged.

    When no appended record accepts, rejects or supersedes an older one, the older rows
    do not change: the new rows go right after the row of the kept side's last record
    (found by rendering it). Otherwise the whole log is read and rendered.
    """
    if not entries:
        return None
    first = entries[0].record.id
    touches_old = any((e.record.target or first) < first or
                      any(ref < first for ref in e.record.supersedes) for e in entries)
    index_blob = keep_all.get(INDEX_NAME)
    if last is not None and index_blob and not touches_old:
        record = origins.record(kept[last])
        entry = Entry(record, last, digest(origins.data(kept[last])))
        row = index_row(entry, record.status if record.kind == "decision" else None, (),
                        ws.root) + "\n"
        current = origins.data(index_blob)
        at = current.rfind(b"\n" + row.encode("utf-8"))
        if at >= 0:
            end = at + 1 + len(row.encode("utf-8"))
            tail = Ledger(entries)
            status, later = tail.statuses(), tail.superseded_by()
            rows = "".join(index_row(e, status.get(e.record.id),
                                     tuple(later.get(e.record.id, ())), ws.root) + "\n"
                           for e in entries)
            return current[:end] + rows.encode("utf-8") + current[end:]
    ledger = Ledger.from_blobs({name: origins.data(blob) for name, blob in kept.items()})
    for entry in entries:
        ledger.append(entry)
    return render_index(ledger, ws.root).encode("utf-8")


def _pages(ws: Workspace, keep: str, entries: list[Entry]) -> dict[str, bytes]:
    """The pages of a log in folders that the appended `entries` change, and the summary.
    The kept log is read through the parsed-log cache, vouched for by its committed pages."""
    if not entries:
        return {}
    ledger = ws.ledger(keep, checked=True)
    folders: set[str] = set()
    for entry in entries:
        ledger.append(entry)
        folders |= layout.touched(ledger, entry)
    return layout.pages(ledger, layout.FOLDERS, ws.root, folders=folders)


def trunk(ws: Workspace) -> str | None:
    return ws.config.repo.trunk or ws.repo.default_branch()


def _theirs_is_trunk(ws: Workspace, theirs: str) -> bool:
    """REF is the trunk when it is a remote's trunk (what the team already shares beats a
    local copy, as in `git pull`), or the local trunk while another branch is checked out."""
    name = trunk(ws)
    if name is None:
        return False
    if theirs in ws.repo.branch_tips(name, remote=True):
        return True
    return ws.repo.branch() != f"refs/heads/{name}" and \
        theirs in ws.repo.branch_tips(name, remote=False)


def _resolve(ws: Workspace, ref: str) -> str:
    sha = ws.repo.resolve(ref)
    if sha is None:
        raise UsageError(f"{ref}: not a branch or commit in this repository "
                         "(`git fetch` it first?)")
    return sha


def _refuse_edited_log(ws: Workspace) -> None:
    for path, status in sorted(ws.repo.uncommitted(DECISIONS + "/").items()):
        if owned(path):
            raise UnsafeRepoError(f"{path}: has changes that are not committed (git status "
                                  f"{status.strip()}); commit or stash them, then merge again; "
                                  "nothing was changed")


def merge(ws: Workspace, ref: str) -> MergeReport:
    repo = ws.repo
    theirs = _resolve(ws, ref)
    with repo.coordinator_lock():
        reason = repo.unsafe_reason()
        if reason:
            raise UnsafeRepoError(f"cannot merge {ref}: {reason} (abort it first, e.g. "
                                  "`git merge --abort` or `git rebase --abort`); nothing was "
                                  "changed")
        ours = repo.head()
        if ours is None:
            raise UsageError("the current branch has no commit yet; nothing to merge into")
        if theirs == ours or repo.is_ancestor(theirs, ours):
            return MergeReport(ref, "up-to-date", ours)
        _refuse_edited_log(ws)
        if repo.is_ancestor(ours, theirs):
            repo.fast_forward(theirs)
            return MergeReport(ref, "fast-forward", theirs)
        base = repo.merge_base(ours, theirs)
        if base is None:
            raise UsageError(f"{ref}: shares no history with the current branch")
        keep, move = (theirs, ours) if _theirs_is_trunk(ws, theirs) else (ours, theirs)
        joined = join(ws, keep, move, base)
        tree, conflicts = repo.merge_trees(ours, theirs)
        outside = [p for p in conflicts if not owned(p)]
        if outside:
            return _leave_conflicted(ws, ref, theirs, joined, outside)
        tree = repo.replace_in_folder(tree, DECISIONS, joined.final, layout.owned)
        refusal = repo.check_out_change(ours, tree, dry_run=True)
        if refusal:
            raise UnsafeRepoError(f"merge {ref}: {refusal} (commit or stash your changes "
                                  "first); nothing was changed")
        sha = repo.commit_merge(tree, [ours, theirs], _message(ws, ref, joined), ws.clock())
        refusal = repo.check_out_change(ours, sha)
        if refusal:
            raise UnsafeRepoError(f"merged as {sha[:12]}, but git could not update the "
                                  f"working tree: {refusal}")
        return MergeReport(ref, "merged", sha, joined)


def _message(ws: Workspace, ref: str, joined: Joined) -> str:
    branch = ws.repo.branch().removeprefix("refs/heads/")
    lines = [f"Merge {ref} into {branch} (squad merge)", ""]
    if joined.renumbered:
        lines += ["Records renumbered to follow the trunk's:"]
        lines += [f"  {old:04d} -> {new:04d}  {title}" for old, new, title in joined.renumbered]
        lines += [""]
    lines += [f"Squad-Merge: {ref}"]
    return "\n".join(lines) + "\n"


def _leave_conflicted(ws: Workspace, ref: str, theirs: str, joined: Joined,
                      outside: list[str]) -> MergeReport:
    repo = ws.repo
    repo.start_merge(theirs)
    staged = repo.index_entries(DECISIONS + "/")
    remove = [path for path in staged
              if owned(path) and path[len(PREFIX):] not in joined.final]
    write = {f"{DECISIONS}/{name}": joined.written.get(name) or repo.blob(sha)
             for name, sha in joined.final.items()
             if staged.get(f"{DECISIONS}/{name}") != sha or name == INDEX_NAME}
    repo.stage_files(write, remove)
    return MergeReport(ref, "conflict", None, joined, outside)


def extends(ws: Workspace, ref: str) -> bool:
    """Whether HEAD's log holds every record of `ref`'s log unchanged (a pull request that
    can be merged without renumbering anything on the base)."""
    theirs = _resolve(ws, ref)
    base = record_names(ws.repo, theirs)
    here = record_names(ws.repo)
    return all(here.get(name) == blob for name, blob in base.items())
