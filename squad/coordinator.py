"""The coordinator: validates every complete drop and commits it as the next record.

Crash safety comes from the order of the steps for one drop, and from git being the only
place that says what is done:

1. read the drop; if `(name, content hash)` is already in a commit's `Squad-Drop` trailers,
   an earlier pass committed it and died before removing it: remove it now;
2. validate it; a bad drop gets `quarantine/<name>.reason` written first, then the drop is
   renamed next to it (re-running the pair after a crash gives the same result);
3. number, date and chain it, and commit the record and the regenerated index straight into
   the object store; moving the branch is the commit point (for a group of drops taken
   together: each its own commit, chained, and the branch moved once to the last);
4. write the files into the working tree and the user's index (`vcs.settle`);
5. remove the drop.

A kill anywhere leaves a state the next pass recognises: before 3 the drop is simply still
waiting; after 3 its trailers mark it done, and `recover` redoes 4 for whatever is missing.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from squad import checkpoint, dropcache, heap, layout, logcache, logview, safety
from squad.checkpoint import Point
from squad.errors import RecordError, SquadError
from squad.ledger import Entry, Ledger, entry_for
from squad.records import Draft, Record, digest, parse_draft, parse_record, render
from squad.vcs import Stopped, blob_sha, write_atomic
from squad.workspace import DECISIONS, Workspace

Log = Callable[[str], None]
# Only a run's own coordinator commits the drops the run made (named `<run>.r<round>...`,
# with `run: <run>` inside), together with the run's log; one left behind by a run that was
# killed is set aside, so no later command commits a run that cannot be replayed.
ORPHAN = ("a drop of run {run}, which ended without committing it (killed or quit at "
          "once); set aside so that no run is committed without its log")


@dataclass
class PassReport:
    committed: list[Record] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)  # the sha of each committed record
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    recovered: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)  # user's path, where it went now
    waiting_for: float | None = None  # seconds until a loose inbox file settles
    drops: list[str] = field(default_factory=list)  # the drop each committed record came from


class Coordinator:
    """`author` names who the commits are by (None: squad's fixed identity); `run` is the
    run whose drops this coordinator may commit (None: drops of no run)."""

    def __init__(self, workspace: Workspace, log: Log | None = None, *,
                 author: str | None = None, run: str | None = None) -> None:
        self.ws = workspace
        self.log = log or (lambda message: None)
        self.author, self.run = author, run
        self._head: str | None = "unknown"
        self._ledger = Ledger()
        self._layout: layout.Layout = layout.FOLDERS
        self._done: set[tuple[str, str]] = set()
        self.writers: dict[tuple[str, str], str] = {}  # drop key -> remote writer, for trailers
        self._settled: tuple[int, int, int] | None = None  # the index as our last settle left it
        self._settled_head: str | None = None  # the commit our last settle wrote out
        # the user's index entries read while its file had this stamp, and for which scopes
        self._staged_memo: tuple[tuple[int, int, int], set[str], dict[str, str]] | None = None
        # the log view's key (decisions/ tree id) and length of the log as last loaded
        self._view_base: tuple[str | None, int] = (None, 0)
        # the listing at `_head` (path in decisions/ -> blob), kept up to date by `_commit`,
        # and the cache entries the verified point under the loaded log vouched for (None:
        # no point, the log was parsed from git): with them, a session that committed puts
        # the point of the log it leaves on file (see `_seal`)
        self._files: dict[str, str] = {}
        self._checks: dict[str, str] | None = None
        self._sealed: tuple[str | None, int] = (None, 0)  # head and log length on file

    # ---- state --------------------------------------------------------------------------

    def _load(self) -> None:
        """(Re)read the log and the done-set from git when HEAD is not where we left it."""
        repo = self.ws.repo
        head = repo.head()
        if head == self._head:
            return
        with heap.loading():  # tens of thousands of objects, none garbage, kept all run
            found = self.ws.checked(head)
        self._ledger, self._layout, files = found.ledger, found.layout, found.files
        self._files = dict(files)
        self._checks = dict(found.checks) if found.checks is not None else None
        self._sealed = (head, len(self._ledger.entries))
        self._done = dropcache.committed(repo, head) if head is not None else set()
        self._head = self._settled_head = head
        self._view_base = (repo.tree_sha(DECISIONS, head), len(self._ledger.entries))
        self._sweep_temporaries()
        self._recover(files)

    def _sweep_temporaries(self) -> None:
        """Remove the temporary files of writes that a kill cut short (`vcs.write_atomic`
        names them `.<name>.<random>.squad-tmp`; squad writes there only under this lock):
        in `decisions/`, its folders of records and `quarantine/`."""
        folders = [self.ws.decisions, self.ws.quarantine]
        if self.ws.decisions.is_dir():
            folders += [entry for entry in self.ws.decisions.iterdir()
                        if layout.FOLDER.match(entry.name) and entry.is_dir()
                        and not entry.is_symlink()]
        for folder in folders:  # one listing each, no pattern matched per record
            try:
                found = [entry for entry in os.scandir(folder) if _temporary(entry.name)]
            except (FileNotFoundError, NotADirectoryError):
                continue
            for leftover in found:
                if leftover.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover.path)

    def _recover(self, listing: dict[str, str]) -> None:
        """Redo step 4 for committed files missing from the working tree or the index.

        Only squad's own leftovers are redone: a path whose working file or index entry holds
        something squad never wrote there (a person's edit, staged or not) is theirs to keep
        and `verify`'s to report. `listing` is every record and page (path in decisions/).
        """
        repo = self.ws.repo
        if not listing or self._head is None or self._head == "unknown":
            return
        # Only what git finds out of step with the commit can be a leftover: a long log
        # costs two git processes here, not a look at every file.
        unsettled = repo.unsettled(self._head, DECISIONS + "/")
        listing = {name: sha for name, sha in listing.items()
                   if f"{DECISIONS}/{name}" in unsettled}
        if not listing:
            return
        staged = repo.index_entries(DECISIONS + "/")
        # What the tree may still show: the commit before the last one, or, after a group
        # commit, where the branch was before it moved (its reflog).
        earlier = {repo.parent_of(self._head), repo.ref(f"{repo.branch()}@{{1}}")} - {None}
        stale = []
        for name, sha in listing.items():
            path = f"{DECISIONS}/{name}"
            target = self.ws.root / path
            if layout.is_record(name):
                # cheap tests first: reading every file of a long log would cost seconds
                if (path not in staged or not target.exists()) \
                        and staged.get(path, sha) == sha and _holds(target, {sha}):
                    stale.append(path)
            elif staged.get(path) != sha:
                before = {repo.file_sha(path, commit) for commit in earlier}
                if staged.get(path) in before | {None} and _holds(target, before | {sha}):
                    stale.append(path)
        if stale:
            repo.settle(stale)
            self.log(f"recovered {len(stale)} file(s) of an interrupted commit")

    def ledger_at(self, commit: str) -> Ledger | None:
        """A copy of the log as loaded, if it is the log at `commit` (a run's round starts
        where the coordinator stands: no second read of the whole log), else None."""
        return self._ledger.copy() if commit == self._head else None

    def is_done(self, key: tuple[str, str]) -> bool:
        """Whether the drop (name, hash) is committed on the branch as last loaded."""
        return key in self._done

    # ---- one pass -----------------------------------------------------------------------

    @contextlib.contextmanager
    def session(self, stop: threading.Event | None = None,
                on_busy: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the repository's coordinator lock with the log loaded; `take` needs one."""
        with self.ws.repo.coordinator_lock(stop, on_busy):
            safety.check_layout(self.ws.root)
            self.ws.repo.ensure_safe()
            self._load()
            yield
            self._seal()
            self._carry_view()

    def _seal(self) -> None:
        """Put the verified point of the log this session leaves on file: the point it
        loaded on, plus the records it committed itself (each rendered, parsed back and
        chained here), so the next session on this tree needs no full check."""
        head, repo = self._head, self.ws.repo
        if self._checks is None or head is None or head == "unknown" \
                or self._sealed[0] == head:
            return
        tree = repo.tree_sha(DECISIONS, head)
        if tree is None:
            return
        added = self._ledger.entries[self._sealed[1]:]
        since = repo.tree_sha(DECISIONS, self._sealed[0]) if self._sealed[0] else None
        with contextlib.suppress(KeyError):  # a record without its blob: no point
            checks = logcache.remember(repo, {self._files[entry.name]: entry
                                              for entry in added})
            self._checks.update(checks)
            # what this session's commits wrote (see `_commit`): its records, the summary and
            # the pages of the folders each record touched (a flat log has the summary only)
            pages = {layout.PAGE} | {f"{folder}/{layout.PAGE}" for entry in added
                                     for folder in layout.touched(self._ledger, entry)}
            changed = [entry.name for entry in added] \
                + [path for path in pages if path in self._files]
            files, every = self._files, self._checks
            checkpoint.extend(repo, since,
                              Point(tree, {path: files[path] for path in changed}, checks),
                              lambda: Point(tree, files, every))
            self._sealed = (head, len(self._ledger.entries))

    def _carry_view(self) -> None:
        """Bring the log view (`squad log`, `squad show`) up to the records this session
        committed, from the view of the log it loaded, if that one is on file: the first
        `log` after a commit then costs what any `log` costs (see `logview.carry`)."""
        old_key, count = self._view_base
        head, repo = self._head, self.ws.repo
        added = self._ledger.entries[count:]
        if old_key is None or not added or head is None or head == "unknown":
            return
        key = repo.tree_sha(DECISIONS, head)
        if key is None:
            return
        blobs: dict[str, str] = {}
        for entry in added:
            blob = repo.file_sha(f"{DECISIONS}/{entry.name}", head)
            if blob is None:
                return
            blobs[entry.name] = blob
        with contextlib.suppress(OSError):
            logview.carry(repo.git_dir, old_key, key, logview.settings_digest(self.ws.root),
                          self._ledger, blobs)
        self._view_base = (key, len(self._ledger.entries))

    def ingest(self, stop: threading.Event | None = None,
               on_busy: Callable[[], None] | None = None) -> PassReport:
        """Take every complete drop now in the inbox, in name order, and commit or quarantine it.

        With `stop`, the pass ends after the drop in hand once `stop` is set (and gives up
        waiting for the lock, which a `squad run` holds for its whole length).
        """
        report = PassReport()
        inbox = self.ws.inbox
        safety.check_layout(self.ws.root)  # before claiming: a linked inbox is refused
        report.waiting_for = inbox.claim_loose(self.ws.config.coordinator.settle_seconds)
        if not inbox.ready() and self._head != "unknown":
            return report
        try:
            with self.session(stop, on_busy):
                self.take_all(inbox.ready(), report, stop)
        except Stopped:
            pass
        return report

    def ingest_settled(self, on_busy: Callable[[], None] | None = None) -> PassReport:
        """One pass, plus one more once a file copied into the inbox a moment ago has
        settled: a one-shot `squad ingest` owes it to that file, a watcher does not."""
        report = self.ingest(on_busy=on_busy)
        if report.waiting_for is not None:
            time.sleep(report.waiting_for + 0.05)
            later = self.ingest(on_busy=on_busy)
            report.committed += later.committed
            report.commits += later.commits
            report.quarantined += later.quarantined
            report.recovered += later.recovered
            report.kept += later.kept
            report.waiting_for = later.waiting_for
        return report

    def take(self, name: str, report: PassReport) -> None:
        """Commit, quarantine or (if an earlier pass committed it) remove one drop."""
        self.take_all([name], report)

    def take_all(self, names: list[str], report: PassReport,
                 stop: threading.Event | None = None) -> None:
        """Take drops in the given order as one group commit: each valid drop is still its
        own commit (the same objects and SHAs as one at a time), but the objects are made
        durable, the branch moved and the working tree written once for the group, so a
        backlog or a burst of agents costs one fsync round and two git processes, not that
        per drop. With `stop`, no drop is started once it is set; those in hand finish."""
        base, group = self._head, []
        try:
            for name in names:
                if stop is not None and stop.is_set():
                    break
                taken = self._prepare(name, report)
                if taken is not None:
                    group.append(taken)
        finally:
            if group:
                self._publish(base, group, report)

    def _prepare(self, name: str, report: PassReport,
                 ) -> tuple[str, Record, list[str], str] | None:
        """Validate one drop and write its commit on top of the group so far; returns
        (drop name, record, the paths it writes, commit) to publish, None when handled."""
        path = self.ws.inbox.new / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None  # another coordinator took it
        if not stat.S_ISREG(info.st_mode):
            kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            self._quarantine(name, f"{kind}; a drop must be a regular file", report)
            return None
        limit = self.ws.config.coordinator.max_drop_bytes
        if info.st_size > limit:
            self._quarantine(
                name, f"{info.st_size} bytes, over the {limit}-byte limit for a drop", report)
            return None
        data = path.read_bytes()
        key = (trailer_name(name), digest(data))
        if key in self._done:
            os.unlink(path)
            report.recovered += 1
            self.log(f"removed {name}: already committed by an interrupted pass")
            return None
        try:
            draft = parse_draft(decode(data))
            problem = self._ledger.problems_with(draft)
        except RecordError as exc:
            self._quarantine(name, exc.message, report)
            return None
        except Exception as exc:  # one drop that trips anything must not block the others
            detail = " ".join(str(exc).split())[:200]
            self._quarantine(name, f"could not be validated: {type(exc).__name__}: "
                                   f"{detail}", report)
            return None
        if draft.run is not None and draft.run != self.run and name.startswith(f"{draft.run}.r"):
            self._quarantine(name, ORPHAN.format(run=draft.run), report)
            return None
        if problem:
            self._quarantine(name, problem, report)
            return None
        record, paths = self._commit(draft, key, report)
        self._done.add(key)  # the same bytes under the same name again are a duplicate
        return name, record, paths, self._head or ""

    def _publish(self, base: str | None, group: list[tuple[str, Record, list[str], str]],
                 report: PassReport) -> None:
        """The commit point of a group: move the branch from `base` to the group's last
        commit (objects made durable first); then write the working tree and the index, then
        remove the drops. A kill before the move leaves every drop waiting; after it, their
        trailers say they are done and `_recover` finishes the files."""
        repo, last = self.ws.repo, group[-1][3]
        try:
            repo.move_branch(last, base, group[-1][1].title)
        except SquadError:
            self._head = "unknown"  # reload the log from git on the next pass
            raise
        repo.settle(sorted({path for _, _, paths, _ in group for path in paths}), last)
        self._settled, self._settled_head = self._index_stamp(), last
        for name, record, _, sha in group:
            os.unlink(self.ws.inbox.new / name)
            report.committed.append(record)
            report.commits.append(sha)
            report.drops.append(name)
            self.log(f"committed {record.id:04d} {record.title} ({name})")

    def _commit(self, draft: Draft, key: tuple[str, str],
                report: PassReport | None = None) -> tuple[Record, list[str]]:
        """Number, date and chain the draft and write its commit on top of `_head`; the
        branch does not move (see `_publish`). Returns the record and the paths written."""
        ledger = self._ledger
        now = self.ws.clock()
        if ledger.last_date and now < ledger.last_date:
            now = ledger.last_date  # the log's dates never go backwards
        record = Record(**draft.model_dump(), id=ledger.next_id, date=now,
                        prev=ledger.head_digest)
        text = render(record, self.ws.templates)
        if parse_record(text) != record:
            raise SquadError(
                "templates/record.md.j2 renders records that do not parse back; fix the override")
        data = text.encode("utf-8")
        folder = layout.folder_of(record.id) if self._layout == layout.FOLDERS else ""
        entry = entry_for(record, data, folder)
        ledger.append(entry)
        try:
            files = self._write(entry, data, key, now, report or PassReport())
        except BaseException:
            # The record is in the log in memory but not in git: the next session must
            # load the log from git again, or its next drop would chain to this one.
            self._head = "unknown"
            raise
        return record, files

    def _write(self, entry: Entry, data: bytes, key: tuple[str, str], now: datetime,
               report: PassReport) -> list[str]:
        """The commit of `entry` (just appended to the log) on top of `_head`, with the
        index pages it changes; the paths it writes."""
        record, repo = entry.record, self.ws.repo
        pages = layout.pages(self._ledger, self._layout, self.ws.templates,
                             folders=layout.touched(self._ledger, entry))
        files = {f"{DECISIONS}/{entry.name}": data}
        files.update({f"{DECISIONS}/{name}": page for name, page in pages.items()})
        safety.check_layout(self.ws.root, {p.rpartition("/")[0] for p in files})
        trailers = [("Squad-Decision", f"{record.id:04d}"), ("Squad-Agent", record.agent),
                    ("Squad-Drop", key[0]), ("Squad-Drop-Hash", key[1])]
        if record.run:
            trailers.append(("Squad-Run", record.run))
        if key in self.writers:
            trailers.append(("Squad-Writer", self.writers[key]))
        self._keep_users_versions(list(files), report)
        self._files.update({path.partition("/")[2]: blob_sha(data)
                            for path, data in files.items()})
        message = record.title + "\n\n" + "".join(f"{k}: {v}\n" for k, v in trailers)
        self._head = repo.make_commit_on(self._head, dict(files), message, now,
                                         author=self.author)
        return list(files)

    def _index_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.ws.repo.git_dir / "index")
        except FileNotFoundError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _keep_users_versions(self, paths: list[str], report: PassReport) -> None:
        """Move aside whatever the user has at the paths squad is about to write: a file or
        folder squad did not put there, an unstaged or a staged edit."""
        repo = self.ws.repo
        stamp = self._index_stamp()
        # Unchanged since our last settle: it holds our blobs and nothing at a new path.
        staged = {} if stamp is not None and stamp == self._settled else \
            self._staged(stamp, paths)
        for path in paths:
            before = repo.file_sha(path, self._settled_head)  # what the tree should hold
            target = self.ws.root / path
            theirs_staged = staged.get(path, before) not in (before, None)
            if not theirs_staged and _holds(target, {before} if before else set()):
                continue
            keep = repo.blob(staged[path]) if theirs_staged else None
            for kept in safety.keep_aside(target, keep):
                where = kept.relative_to(self.ws.root).as_posix()
                report.kept.append((path, where))
                self.log(f"kept your version of {path} as {where} (squad writes {path})")

    def _staged(self, stamp: tuple[int, int, int] | None, paths: list[str]) -> dict[str, str]:
        """The user's index entries at `paths`. git reads its whole index for any query, so
        a backlog taken before the first settle asks once per folder, not once per drop:
        while the index file is unchanged (same stamp), the entries of a folder read before
        still hold, a path missing from them included."""
        scopes = {_scope(path) for path in paths}
        known = self._staged_memo
        if stamp is None or known is None or known[0] != stamp:
            known = self._staged_memo = (stamp, set(), {}) if stamp is not None else None
        if known is None or not scopes <= known[1]:
            entries = self.ws.repo.index_entries(*sorted(scopes))
            if known is None:
                return entries
            known[1].update(scopes)
            known[2].update(entries)
        return {path: known[2][path] for path in paths if path in known[2]}

    def _quarantine(self, name: str, reason: str, report: PassReport) -> None:
        folder = self.ws.quarantine
        folder.mkdir(parents=True, exist_ok=True)
        target = quarantine_name(folder, name)
        write_atomic(folder / f"{target}.reason", f"{trailer_name(name)}: {reason}\n".encode())
        os.rename(self.ws.inbox.new / name, folder / target)
        report.quarantined.append((name, reason))
        self.log(f"quarantined {trailer_name(name)}: {reason}")


def _temporary(name: str) -> bool:
    """A name `vcs.write_atomic` gives its temporary files (`.*.squad-tmp`)."""
    return name.startswith(".") and name.endswith(".squad-tmp") and len(name) > len(".squad-tmp")


def _scope(path: str) -> str:
    """What to ask git's index for to learn about `path`: its folder of records (a bounded
    folder), or the path itself when it sits directly in decisions/ (a flat log's folder)."""
    folder = path.rpartition("/")[0]
    return f"{folder}/" if folder != DECISIONS else path


def _holds(path: os.PathLike[str], shas: set[str | None]) -> bool:
    """True if nothing is at `path`, or a regular file whose blob sha is one of `shas`."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    if not stat.S_ISREG(info.st_mode):
        return False
    with open(path, "rb") as handle:
        return blob_sha(handle.read()) in shas


def decode(data: bytes) -> str:
    if not data.strip():
        raise RecordError("empty drop")
    if b"\x00" in data:
        raise RecordError("binary content (NUL bytes); a drop is UTF-8 markdown")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 (byte {exc.start})") from None


def trailer_name(name: str) -> str:
    """A drop name as it can stand on one trailer line, whatever bytes the file name holds."""
    raw = name.encode("utf-8", "surrogateescape")
    return urllib.parse.quote(raw, safe="!#$&'()*+,-./:;=?@[]^_`{|}~")


def quarantine_name(folder: os.PathLike[str], name: str) -> str:
    """A free name for the drop in quarantine.

    No quarantined drop is named `*.reason`, so every `.reason` file is a reason, and one
    without its drop is the leftover of an interrupted quarantine of this same drop.
    """
    base = name if len(name.encode("utf-8", "surrogateescape")) <= 200 else (
        trailer_name(name)[:120] + "-" + digest(name.encode("utf-8", "surrogateescape"))[7:19])
    if base.endswith(".reason"):
        base += ".drop"
    candidate, n = base, 1
    while os.path.lexists(os.path.join(folder, candidate)):
        n += 1
        candidate = f"{base}.{n}"
    return candidate
