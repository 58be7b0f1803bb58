"""Everything squad does with git, in one place (the only module that imports GitPython).

Squad commits without touching the user's staging area: blobs, trees and the commit object
are written straight into the object store, and the branch moves with a compare-and-swap
`update-ref`. That ref update is the commit point. Only afterwards are the committed files
written to the working tree and their entries (and only theirs) set in the user's index, so
`git status` stays clean; `repair` redoes those two steps after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import git
from git.objects.fun import tree_entries_from_data

from squad import packs
from squad.errors import NotARepoError, RemoteError, SquadError, UnsafeRepoError, UsageError

# squad's policy, kept here in one place rather than scattered through the git layer:
IDENTITY = "squad <squad@localhost>"  # committer of every squad commit (fixed: replays match)
COORDINATOR_LOCK = "squad.lock"  # in the git dir: one coordinator per repository
OBJECT_FORMAT = "sha1"  # objects are hashed here by hand; other formats are refused on open

# git commands that never read an object squad may still hold pending (see `_before_git`)
_OBJECT_FREE = {"ls-files", "status", "for-each-ref", "config", "symbolic-ref", "version"}
_SEEN_MAX, _SEEN_MAX_BYTES = 1024, 64 * 1024  # the read cache: entries, and one's size
_TREE_MODE = 0o040000
_FILE_MODE = 0o100644
_ZERO = "0" * 40
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_SHA = re.compile(r"[0-9a-f]{40}")
# a branch ref read straight from its file: plain components only (no `..`, no dot first)
_REF_NAME = re.compile(r"refs/heads(?:/[A-Za-z0-9_+-][A-Za-z0-9_.+-]*)+")
# What a commit sets at a path: new bytes, the sha of a blob already stored, or None (remove).
Content = bytes | str | None
T = TypeVar("T")


@dataclass(frozen=True)
class Commit:
    sha: str
    trailers: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One path changed by one commit: `letter` is git's A, M, D...; a missing side's blob
    is all zeros; `decisions` and `layout` are the commit's Squad-Decision and
    Squad-Layout trailers."""

    commit: str
    letter: str
    path: str
    old: str
    new: str
    decisions: list[str]
    layout: str


def open_repo(start: Path) -> Repository:
    try:
        repo = _Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise NotARepoError(
            f"{start}: not inside a git repository (run `git init` first)") from None
    if repo.bare or repo.working_tree_dir is None:
        raise NotARepoError(f"{start}: a bare repository has no working tree for squad")
    _check_owner(repo)
    # read from the repository's config, not asked of a git process: every command opens one
    with repo.config_reader("repository") as config:
        fmt = str(config.get_value("extensions", "objectformat", OBJECT_FORMAT)).lower()
    if fmt != OBJECT_FORMAT:
        root = repo.working_tree_dir
        repo.close()
        raise UnsafeRepoError(
            f"{root}: the repository uses {fmt} object names (extensions.objectFormat); "
            f"squad writes only {OBJECT_FORMAT} objects")
    return Repository(repo)


def _check_owner(repo: git.Repo) -> None:
    """git refuses a repository another user owns unless told it is safe (safe.directory);
    GitPython would only fail later, mid-command. Asked of git only when the owners differ."""
    root = Path(str(repo.working_tree_dir))
    if root.stat().st_uid == os.geteuid():
        return
    out = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=root, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    if out.returncode and "dubious ownership" in out.stderr:
        repo.close()
        raise UnsafeRepoError(
            f"{root}: git refuses a repository owned by another user; if you trust it: "
            f"git config --global --add safe.directory {root}")


_STOPS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """SIGINT and SIGTERM held back from this thread while a child is started (it inherits
    that mask); they stay pending and reach squad as soon as the child has started."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _ShieldedPopen(subprocess.Popen[bytes]):
    """How squad starts git: where a Ctrl-C meant for squad cannot reach it. A terminal's
    Ctrl-C goes to every process of the foreground group; git runs in a session of its own
    (`start_new_session`), but a child is still in squad's group between its fork and its
    `setsid`, and a git killed there (say the `update-index` after a commit point) would turn
    squad's orderly stop into a half-done step. So the child starts with SIGINT and SIGTERM
    blocked and keeps them blocked (git never unblocks them; squad stops what it must stop
    with SIGKILL). Only the start is shielded: squad itself hears a Ctrl-C while it waits."""

    def _execute_child(self, *args: Any, **kwargs: Any) -> None:
        with _shielded():
            super()._execute_child(*args, **kwargs)  # type: ignore[misc]


git.cmd.safer_popen = _ShieldedPopen  # the one name GitPython starts every git process by


class _Git(git.Git):
    """git's processes, each in a session of its own and shielded (see `_ShieldedPopen`)."""

    before: Callable[[list[str]], None] | None = None  # set by Repository: publish objects

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("start_new_session", True)
        if self.before is not None and args:
            self.before(list(args[0]))
        return super().execute(*args, **kwargs)


class _Repo(git.Repo):
    GitCommandWrapperType = _Git


class Repository:
    def __init__(self, repo: git.Repo) -> None:
        self._repo = repo
        self.root = Path(repo.working_tree_dir or ".").resolve()
        self.git_dir = Path(repo.git_dir)
        self.common_dir = Path(repo.common_dir)  # shared by the clone's worktrees
        self._objects = self.common_dir / "objects"
        self._trees: dict[str, list[tuple[bytes, int, str]]] = {}
        self._roots: dict[str, str] = {}  # commit -> its root tree
        self._written: dict[str, tuple[str, bytes]] = {}  # objects of our latest group
        self._seen: dict[str, tuple[str, bytes]] = {}  # objects read lately (by sha: final)
        self._reading = threading.Lock()
        self._unsynced: set[Path] = set()  # object folders whose new names are not yet durable
        # Objects written since the last commit point, not yet in the object store: they go
        # there as one pack (see squad.packs) when a ref is about to name them, or before any
        # git process that could read them starts.
        self._pending: dict[str, tuple[str, bytes]] = {}
        self._packing = threading.Lock()
        self._swept = False
        self._packs = -1  # packs in the object store as far as we know (-1: not counted yet)
        self._mover = RefMover(self.root)
        git_cmd = repo.git
        if isinstance(git_cmd, _Git):
            git_cmd.before = self._before_git

    def _before_git(self, command: list[str]) -> None:
        """A git process is about to start: it must see every object squad wrote, unless
        it is one of the few that read no object by name."""
        if self._pending and not _OBJECT_FREE & set(command[1:3]):
            self._flush()

    def _flush(self) -> None:
        """Write the pending objects as one pack (each file fsynced before its rename)."""
        with self._packing:
            if not self._pending:
                return
            folder = self._objects / "pack"
            if not self._swept:
                packs.sweep(folder)
                self._swept = True
            packs.write(folder, ((sha, kind, data)
                                 for sha, (kind, data) in self._pending.items()))
            self._pending.clear()
            self._unsynced.add(folder)
            if self._packs < 0:
                self._packs = packs.count(folder)
            else:
                self._packs += 1

    def _consolidate(self) -> None:
        """Past `packs.LIMIT` packs, let git roll the small ones up (`repack --geometric`:
        it merges whole packs, reachable or not, so nothing a ref is about to name is
        lost, and its cost follows the small packs' size, not the repository's). Every
        object lookup walks the packs, so thousands of one-commit packs would slow every
        later read; git's own `gc --auto` would only step in on the user's next commit."""
        if self._packs <= packs.LIMIT:
            return
        with contextlib.suppress(git.GitCommandError):  # a failed tidy-up costs only speed
            self._repo.git.repack("-d", "-q", "--geometric=2", "--no-write-bitmap-index")
        self._packs = packs.count(self._objects / "pack")

    def _sync_objects(self) -> None:
        """Make every object written so far durable: called before each ref moves to one
        (the commit point), so a crash never leaves a ref naming a lost object. The pack's
        files are fsynced as written; here their folder is, once per commit point."""
        self._flush()
        while self._unsynced:
            _sync_dir(self._unsynced.pop())

    def close(self) -> None:
        """Objects still pending go to the store first: a sha squad handed out (a commit
        made but not yet on a branch) stays readable by git afterwards."""
        try:
            self._flush()
        finally:
            self._mover.close()
            self._repo.close()

    # ---- state checks -------------------------------------------------------------------

    def unsafe_reason(self) -> str | None:
        """Why a commit would be unsafe right now, or None."""
        markers = {
            "MERGE_HEAD": "a merge is in progress",
            "CHERRY_PICK_HEAD": "a cherry-pick is in progress",
            "REVERT_HEAD": "a revert is in progress",
            "rebase-merge": "a rebase is in progress",
            "rebase-apply": "a rebase or `git am` is in progress",
            "BISECT_LOG": "a bisect is in progress",
        }
        for name, why in markers.items():
            if (self.git_dir / name).exists():
                return why
        if (self.git_dir / "index.lock").exists():
            return "the index is locked (.git/index.lock exists: another git command is running)"
        if self._branch_ref() is None and self._repo.head.is_detached:
            return "HEAD is detached; check out a branch first"
        return None

    def ensure_safe(self) -> None:
        reason = self.unsafe_reason()
        if reason:
            raise UnsafeRepoError(f"{self.root}: cannot commit: {reason}; drops are kept")

    def head(self) -> str | None:
        """The commit HEAD names, read from the ref files (no `git cat-file` round trip:
        every run asks several times). The common case, HEAD on a branch whose ref is a
        loose file, is two small reads here; anything else (a packed ref, a detached HEAD,
        a symbolic chain) is GitPython's, which costs ~0.4 ms a time."""
        branch = self._branch_ref()
        if branch is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                sha = (self.common_dir / branch).read_text("ascii").strip()
                if _SHA.fullmatch(sha):
                    return sha if sha != _ZERO else None
        try:
            sha = git.SymbolicReference.dereference_recursive(self._repo, "HEAD")
        except ValueError:
            return None
        return sha if len(sha) == 40 and sha != _ZERO else None

    def _branch_ref(self) -> str | None:
        """The branch HEAD names (`refs/heads/...`) when HEAD is a plain symbolic ref to
        one; None otherwise (detached, unreadable, anything unusual: ask GitPython)."""
        try:
            text = (self.git_dir / "HEAD").read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        ref = text[5:].strip() if text.startswith("ref: ") else ""
        if ref.startswith("refs/heads/") and _REF_NAME.fullmatch(ref):
            return ref
        return None

    def _cat_file(self, read: Callable[[], T]) -> T:
        """Run `read` through GitPython's long-lived `git cat-file`, one caller at a time.

        That process shares squad's process group, so a terminal's Ctrl-C kills it too while
        squad goes on to stop cleanly; if it died, start a fresh one and read again.
        """
        with self._reading:
            try:
                return read()
            except (BrokenPipeError, ConnectionResetError):
                self._repo.git.clear_cache()
                return read()

    def user_name(self) -> str | None:
        with self._repo.config_reader() as config:
            name = config.get_value("user", "name", default="")
        return str(name).strip() or None

    def user_identity(self) -> str | None:
        """`Name <email>` as git would author a commit here (environment, then config), or
        None when git knows no name; callers fall back to squad's own IDENTITY."""
        name = os.environ.get("GIT_AUTHOR_NAME") or self.user_name()
        with self._repo.config_reader() as config:
            email = str(config.get_value("user", "email", default="")).strip()
        email = os.environ.get("GIT_AUTHOR_EMAIL") or email
        if not name:
            return None
        clean = " ".join(name.replace("<", "").replace(">", "").split())
        address = "".join(email.replace("<", "").replace(">", "").split()) or "unknown"
        return f"{clean} <{address}>" if clean else None

    def branch(self) -> str:
        # e.g. refs/heads/main, also for an unborn branch
        return self._branch_ref() or self._repo.head.ref.path

    # ---- reading ------------------------------------------------------------------------

    def _read(self, sha: str) -> tuple[str, bytes]:
        found = self._written.get(sha) or self._pending.get(sha) or self._seen.get(sha)
        if found is not None:
            return found

        def read() -> tuple[str, bytes]:
            stream = self._repo.odb.stream(bytes.fromhex(sha))
            return stream.type.decode(), stream.read()

        found = self._cat_file(read)
        if len(found[1]) <= _SEEN_MAX_BYTES:  # an object never changes: keep small ones
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            self._seen[sha] = found
        return found

    def _tree(self, sha: str) -> list[tuple[bytes, int, str]]:
        if sha not in self._trees:
            kind, data = self._read(sha)
            if kind != "tree":
                raise SquadError(f"git object {sha} is a {kind}, not a tree")
            self._trees[sha] = _tree_entries(data)
        return self._trees[sha]

    def _root_tree(self, commit: str | None) -> str | None:
        if commit is None:
            return None
        if commit not in self._roots:  # a commit never changes: one read per commit
            _, data = self._read(commit)
            self._roots[commit] = data[5:45].decode()
        return self._roots[commit]

    def _lookup(self, tree: str | None, path: str) -> tuple[int, str] | None:
        parts = path.strip("/").split("/")
        mode, sha = _TREE_MODE, tree
        for part in parts:
            if sha is None or mode != _TREE_MODE:
                return None
            found = [(m, s.hex()) for s, m, n in self._tree(sha) if n == part]
            if not found:
                return None
            mode, sha = found[0]
        return (mode, sha) if sha else None

    def list_dir(self, path: str, commit: str | None = None) -> dict[str, str]:
        """name -> blob sha of the files directly in `path` at `commit` (default HEAD)."""
        entry = self._lookup(self._root_tree(commit or self.head()), path)
        if entry is None or entry[0] != _TREE_MODE:
            return {}
        return {n: s.hex() for s, m, n in self._tree(entry[1]) if m != _TREE_MODE}

    def tracked_files(self) -> list[str]:
        """Paths of the files in the user's index (git-tracked), relative to the root."""
        out = self._repo.git.ls_files("-z", "--cached", "--full-name")
        return sorted({path for path in out.split("\0") if path})

    def list_dirs(self, path: str, commit: str | None = None) -> list[str]:
        """Names of the folders directly in `path` at `commit` (default HEAD)."""
        entry = self._lookup(self._root_tree(commit or self.head()), path)
        if entry is None or entry[0] != _TREE_MODE:
            return []
        return [n for _, m, n in self._tree(entry[1]) if m == _TREE_MODE]

    def tree_sha(self, path: str, commit: str | None) -> str | None:
        """The tree id of the folder `path` at `commit`, or None (no commit, no folder)."""
        if commit is None:
            return None
        entry = self._lookup(self._root_tree(commit), path)
        return entry[1] if entry is not None and entry[0] == _TREE_MODE else None

    def file_sha(self, path: str, commit: str | None) -> str | None:
        """The blob sha of the file `path` at `commit`, or None (no commit, no such file)."""
        if commit is None:
            return None
        entry = self._lookup(self._root_tree(commit), path)
        return None if entry is None or entry[0] == _TREE_MODE else entry[1]

    def parent_of(self, commit: str | None) -> str | None:
        """The first parent of `commit`, or None."""
        if commit is None:
            return None
        _, data = self._read(commit)
        for line in data.split(b"\n"):
            if line.startswith(b"parent "):
                return line[7:47].decode()
            if not line:
                break
        return None

    def blob(self, sha: str) -> bytes:
        return self._read(sha)[1]

    def file_at(self, path: str, commit: str | None = None) -> bytes | None:
        entry = self._lookup(self._root_tree(commit or self.head()), path)
        return None if entry is None or entry[0] == _TREE_MODE else self.blob(entry[1])

    def find_commit(self, key: str, value: str, commit: str | None = None) -> Commit | None:
        """The newest commit reachable from `commit` (default HEAD) with the trailer
        `key: value`; git stops at the first match, so a recent one is cheap to find."""
        start = commit or self.head()
        if start is None:
            return None
        out = self._repo.git.log(start, "-n", "1", "-F", f"--grep={key}: {value}",
                                 "--format=%H%x00%(trailers:only,unfold)")
        sha, _, text = out.strip("\n").partition("\x00")
        trailers: dict[str, list[str]] = {}
        for line in text.splitlines():
            name, sep, found = line.partition(": ")
            if sep:
                trailers.setdefault(name, []).append(found)
        return Commit(sha, trailers) if sha and value in trailers.get(key, []) else None

    # ---- writing ------------------------------------------------------------------------

    def _store(self, kind: str, data: bytes) -> str:
        """Name the object and keep it pending: it reaches the object store in the next
        pack (`_flush`), before any ref or git process can ask for it."""
        hasher = hashlib.sha1(f"{kind} {len(data)}\0".encode())
        hasher.update(data)
        sha = hasher.hexdigest()
        with self._packing:
            self._pending[sha] = (kind, data)
        if kind != "tree":
            self._written[sha] = (kind, data)
        return sha

    def _write_tree(self, base: str | None, files: dict[tuple[str, ...], Content]) -> str:
        """`base` with `files` set: bytes to store, an existing blob's sha (str), or None to
        remove the path (a folder left empty is removed too)."""
        entries = {n: (s, m) for s, m, n in (self._tree(base) if base else [])}
        nested: dict[str, dict[tuple[str, ...], Content]] = {}
        for parts, data in files.items():
            if len(parts) > 1:
                nested.setdefault(parts[0], {})[parts[1:]] = data
            elif data is None:
                entries.pop(parts[0], None)
            else:
                sha = data if isinstance(data, str) else self._store("blob", data)
                entries[parts[0]] = (bytes.fromhex(sha), _FILE_MODE)
        for name, sub in nested.items():
            old = entries.get(name)
            old_sha = old[0].hex() if old and old[1] == _TREE_MODE else None
            inner = self._write_tree(old_sha, sub)
            if inner == _EMPTY_TREE:
                entries.pop(name, None)
            else:
                entries[name] = (bytes.fromhex(inner), _TREE_MODE)
        # git orders tree entries by name, a folder's name as if it ended in '/'
        rows = sorted(((sha, mode, name) for name, (sha, mode) in entries.items()),
                      key=lambda row: row[2] + "/" if row[1] == _TREE_MODE else row[2])
        data = b"".join(b"%o %s\0%s" % (mode, name.encode("utf-8", "surrogateescape"), sha)
                        for sha, mode, name in rows)
        sha = self._store("tree", data)
        if len(self._trees) > 256:  # a cache, not a history: keep memory flat on long runs
            self._trees.clear()
        self._trees[sha] = rows
        return sha

    def commit(self, files: Mapping[str, Content], message: str, when: datetime,
               parent: str | None, *, author: str | None = None) -> str:
        """Commit `files` on top of `parent` and move the branch, which must still be at
        `parent`. Returns the new commit's sha. Working tree and index follow via `settle`.

        `author` (`Name <email>`) names who decided; squad stays the committer. Without it
        the author is squad's fixed IDENTITY, which a replay reproduces."""
        sha = self.make_commit_on(parent, files, message, when, author=author)
        self.move_branch(sha, parent, message.splitlines()[0])
        return sha

    def make_commit_on(self, parent: str | None, files: Mapping[str, Content], message: str,
                       when: datetime, *, author: str | None = None) -> str:
        """Write a commit of `parent`'s tree with `files` changed; no ref moves, nothing is
        durable yet (see `move_branch`). A chain of these, then one move, is a group commit."""
        if not self._pending:  # a new group: the last one's objects are in the store
            self._written.clear()
        tree = self._write_tree(self._root_tree(parent),
                                {tuple(path.split("/")): data for path, data in files.items()})
        seconds = f"{int(when.timestamp())} +0000"
        lines = [f"tree {tree}"] + ([f"parent {parent}"] if parent else [])
        lines += [f"author {author or IDENTITY} {seconds}", f"committer {IDENTITY} {seconds}",
                  "", message]
        sha = self._store("commit", "\n".join(lines).encode())
        self._roots[sha] = tree
        return sha

    def move_branch(self, new: str, old: str | None, what: str) -> None:
        """The commit point: make every object written so far durable, then move the branch
        from `old` (compare-and-swap) to `new` through the repository's one `git update-ref
        --stdin` (see `RefMover`). `what` (a title) went into the reflog when each move was
        a git process of its own; the reflog now says "squad" for every move."""
        self.ensure_safe()
        self._sync_objects()
        branch = self.branch()
        fault = self._mover.move(branch, new, old or _ZERO)
        if fault is not None and self.resolve(branch) != new:  # not moved after all
            raise UnsafeRepoError(
                f"{self.root}: the branch moved while squad was committing: "
                f"{fault}; drops are kept")
        self._consolidate()

    def settle(self, paths: list[str], commit: str | None = None,
               overwrite: bool = True) -> None:
        """Make the working tree and the user's index agree with `commit` on `paths` only.

        With overwrite=False an existing working-tree file is left as it is (a person's edit
        of a committed record is theirs to see and verify to report, never squad's to undo).
        """
        commit = commit or self.head()
        info: list[str] = []
        for path in paths:
            entry = self._lookup(self._root_tree(commit), path)
            if entry is None or entry[0] == _TREE_MODE:
                continue
            target = self.root / path
            if overwrite or not target.exists():
                write_atomic(target, self.blob(entry[1]))
            info += ["--cacheinfo", f"{_FILE_MODE:o},{entry[1]},{path}"]
        if info:
            try:
                self._repo.git.update_index("--add", *info)
            except git.GitCommandError as exc:
                raise UnsafeRepoError(
                    f"{self.root}: committed, but could not update the index: {_stderr(exc)}"
                ) from None

    def unsettled(self, commit: str, prefix: str) -> set[str]:
        """Paths under `prefix` where the user's index differs from `commit` or the working
        tree from the index, as git's stat cache sees them (a superset: a file merely
        touched is listed too): what may hold a commit not yet written out. Two git
        processes that read the index's stat data, instead of a read of every file."""
        staged = self._repo.git.diff_index("--cached", "--name-only", "-z", "--no-renames",
                                           commit, "--", prefix)
        worktree = self._repo.git.diff_files("--name-only", "-z", "--", prefix)
        return {path for path in (staged + "\0" + worktree).split("\0") if path}

    def index_entries(self, *prefixes: str) -> dict[str, str]:
        """path -> blob sha of the user's index entries under the prefixes (or paths)."""
        out = self._repo.git.ls_files("-s", "--", *prefixes)
        entries = {}
        for line in out.splitlines():
            meta, _, path = line.partition("\t")
            entries[path] = meta.split()[1]
        return entries

    def history_walk(self, prefix: str) -> HistoryWalk:
        """What `git log HEAD -- <prefix>` walks (see `_history`), started in the background:
        collect it with `result()`, and `close()` it in a `finally` (that stops its git)."""
        self._before_git(["git", "rev-list"])
        return HistoryWalk(self.root, prefix, unborn=self.head() is None)

    def uncommitted(self, prefix: str) -> dict[str, str]:
        """path -> porcelain status for files under prefix that differ from HEAD."""
        out = self._repo.git.status("--porcelain=v1", "-z", "--untracked-files=all", "--", prefix)
        result = {}
        for item in out.split("\0"):
            if len(item) > 3:
                result[item[3:]] = item[:2]
        return result

    def uncommitted_any(self, paths: list[str]) -> list[str]:
        """Which of `paths` (files or folders) differ from HEAD, untracked files included."""
        out = self._repo.git.status("--porcelain=v1", "-z", "--untracked-files=all", "--",
                                    *paths)
        return sorted({item[3:] for item in out.split("\0") if len(item) > 3})

    def start_branch(self, name: str) -> str:
        """Create `name` at HEAD and switch to it; returns the branch to come back to."""
        back = self._repo.active_branch.name
        try:
            self._repo.git.switch("-c", name)
        except git.GitCommandError as exc:
            raise UnsafeRepoError(f"cannot create branch {name}: {_stderr(exc)}") from None
        return back

    def switch(self, branch: str) -> None:
        try:
            self._repo.git.switch(branch)
        except git.GitCommandError as exc:
            raise UnsafeRepoError(f"could not switch back to {branch}: {_stderr(exc)}; "
                                  "you are still on the run's branch") from None

    def tree_files(self, commit: str) -> dict[str, tuple[int, str]]:
        """path -> (mode, blob sha) of every file in `commit`'s tree."""
        out = self._repo.git.ls_tree("-r", "-z", "--full-tree", commit)
        files = {}
        for item in out.split("\0"):
            if item:
                meta, _, path = item.partition("\t")
                mode, _, sha = meta.split(" ")
                files[path] = (int(mode, 8), sha)
        return files

    @contextlib.contextmanager
    def temporary_worktree(self, commit: str, folder: Path) -> Iterator[Path]:
        """A throwaway worktree of `commit` on a throwaway branch, removed afterwards."""
        branch = f"squad-replay/{folder.name}"
        path = folder / "worktree"
        try:
            self._repo.git.worktree("add", "-q", "-b", branch, str(path), commit)
        except git.GitCommandError as exc:
            raise SquadError(f"cannot check out {commit[:12]} for replay: {_stderr(exc)}") \
                from None
        try:
            yield path
        finally:
            with contextlib.suppress(git.GitCommandError):
                self._repo.git.worktree("remove", "--force", str(path))
            with contextlib.suppress(git.GitCommandError):
                self._repo.git.branch("-D", branch)

    def commits_between(self, base: str, tip: str) -> list[str]:
        return str(self._repo.git.rev_list(f"{base}..{tip}")).split()

    def changed_since(self, ref: str, prefix: str) -> list[str]:
        """Paths under `prefix` that any commit since `ref` added, changed or removed (also
        those added and removed again: a run that came and went is still noticed)."""
        if self.resolve(ref) is None:
            raise UsageError(f"--since {ref}: not a branch or commit here (`git fetch` it "
                             "first?)")
        try:
            out = self._repo.git.log("--format=", "--name-only", "--no-renames", "-m",
                                     f"{ref}..HEAD", "--", prefix)
        except git.GitCommandError as exc:
            raise SquadError(f"--since {ref}: {_stderr(exc) or 'not a commit'}") from None
        return sorted({line for line in out.splitlines() if line})

    # ---- merging (squad merge) -----------------------------------------------------------

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names, or None."""
        out = self._repo.git.rev_parse("--verify", "--quiet", "--end-of-options",
                                       f"{ref}^{{commit}}", with_exceptions=False)
        return str(out).strip() or None

    def merge_base(self, a: str, b: str) -> str | None:
        out = self._repo.git.merge_base(a, b, with_exceptions=False)
        return out.strip() or None

    def parents(self, commit: str) -> list[str]:
        _, data = self._read(commit)
        return [line[7:].decode() for line in data.split(b"\n\n", 1)[0].split(b"\n")
                if line.startswith(b"parent ")]

    def default_branch(self) -> str | None:
        """The branch a clone would check out: origin's HEAD, else init.defaultBranch."""
        out = str(self._repo.git.symbolic_ref("--quiet", "refs/remotes/origin/HEAD",
                                              with_exceptions=False)).strip()
        if out:
            return out.removeprefix("refs/remotes/origin/")
        with self._repo.config_reader() as config:
            name = str(config.get_value("init", "defaultBranch", default="")).strip()
        for candidate in (name, "main", "master"):
            if candidate and self.resolve(f"refs/heads/{candidate}"):
                return candidate
        return None

    def branch_tips(self, name: str, remote: bool) -> list[str]:
        """Commits of the local branch `name`, or of every remote's branch `name`."""
        pattern = f"refs/remotes/*/{name}" if remote else f"refs/heads/{name}"
        return str(self._repo.git.for_each_ref("--format=%(objectname)", pattern)).split()

    def merge_trees(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """git's own merge of two commits as a tree (nothing checked out), and the paths
        it could not merge."""
        status, out, err = self._repo.git.merge_tree(
            "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs,
            with_extended_output=True, with_exceptions=False, strip_newline_in_stdout=False)
        if status not in (0, 1):
            raise SquadError(f"git merge-tree failed: {' '.join(err.split())[:300]}")
        tree, *paths = out.split("\0")
        return tree.strip(), sorted({path for path in paths if path})

    def store_blob(self, data: bytes) -> str:
        return self._store("blob", data)

    def replace_in_folder(self, tree: str, folder: str, files: dict[str, str],
                          owns: Callable[[str], bool]) -> str:
        """`tree` where the files under `folder` that `owns` claims (by their path inside
        `folder`) are exactly `files` (path inside `folder` -> blob sha); everything else in
        the tree stays as it is."""
        rows = {n: (s, m) for s, m, n in self._tree(tree)}
        old = rows.get(folder)
        base = self._unowned(old[0].hex(), "", owns) if old and old[1] == _TREE_MODE else None
        inner = self._write_tree(base, {tuple(p.split("/")): sha for p, sha in files.items()})
        rows[folder] = (bytes.fromhex(inner), _TREE_MODE)
        return self._rows_tree(rows)

    def _unowned(self, tree: str, prefix: str, owns: Callable[[str], bool]) -> str | None:
        """`tree` without the files `owns` claims, at any depth (None if nothing is left)."""
        rows: dict[str, tuple[bytes, int]] = {}
        for sha, mode, name in self._tree(tree):
            if mode == _TREE_MODE:
                inner = self._unowned(sha.hex(), f"{prefix}{name}/", owns)
                if inner is not None:
                    rows[name] = (bytes.fromhex(inner), mode)
            elif not owns(f"{prefix}{name}"):
                rows[name] = (sha, mode)
        return self._rows_tree(rows) if rows else None

    def _rows_tree(self, entries: dict[str, tuple[bytes, int]]) -> str:
        rows = sorted(((sha, mode, name) for name, (sha, mode) in entries.items()),
                      key=lambda row: row[2] + "/" if row[1] == _TREE_MODE else row[2])
        data = b"".join(b"%o %s\0%s" % (mode, name.encode("utf-8", "surrogateescape"), sha)
                        for sha, mode, name in rows)
        return self._store("tree", data)

    def commit_merge(self, tree: str, parents: list[str], message: str,
                     when: datetime) -> str:
        """A merge commit of `tree` with `parents`, moving the branch, which must still be
        at the first parent (compare-and-swap, as for every squad commit)."""
        self.ensure_safe()
        stamp = f"{IDENTITY} {int(when.timestamp())} +0000"
        lines = [f"tree {tree}"] + [f"parent {p}" for p in parents]
        lines += [f"author {stamp}", f"committer {stamp}", "", message]
        sha = self._store("commit", "\n".join(lines).encode())
        self._sync_objects()
        try:
            self._repo.git.update_ref("-m", f"squad: {message.splitlines()[0]}",
                                      self.branch(), sha, parents[0])
        except git.GitCommandError as exc:
            raise UnsafeRepoError(f"{self.root}: the branch moved while squad was merging: "
                                  f"{_stderr(exc)}; nothing was changed") from None
        return sha

    def refresh_index(self) -> None:
        """`git update-index --refresh`: squad's own index entries carry no file times, and
        git would take them for changed files when it next carries the working tree."""
        with contextlib.suppress(git.GitCommandError):
            self._repo.git.update_index("-q", "--refresh")

    def check_out_change(self, old: str, new: str, dry_run: bool = False) -> str | None:
        """Carry the working tree and index from `old` to `new` as `git checkout` would,
        keeping the user's other changes; returns git's refusal, or None."""
        args = ["-m", "-u", *(["-n"] if dry_run else []), old, new]
        status, _, err = self._repo.git.read_tree(*args, with_extended_output=True,
                                                   with_exceptions=False)
        return None if status == 0 else " ".join(err.split())[:500]

    def fast_forward(self, ref: str) -> None:
        self._sync_objects()
        status, _, err = self._repo.git.merge("--ff-only", "-q", ref,
                                              with_extended_output=True, with_exceptions=False)
        if status != 0:
            raise UnsafeRepoError(f"git refused to fast-forward to {ref}: "
                                  f"{' '.join(err.split())[:500]}")

    def start_merge(self, ref: str) -> list[str]:
        """`git merge --no-commit --no-ff ref`: git's ordinary conflicted-merge state.
        Returns the paths git left conflicted; raises if git refused to start."""
        _, _, err = self._repo.git.merge("--no-commit", "--no-ff", "-q", ref,
                                              with_extended_output=True, with_exceptions=False)
        if not (self.git_dir / "MERGE_HEAD").exists():
            raise UnsafeRepoError(f"git refused to merge {ref}: {' '.join(err.split())[:500]}")
        out = self._repo.git.diff("--name-only", "--diff-filter=U", "-z")
        return sorted({p for p in out.split("\0") if p})

    def stage_files(self, write: dict[str, bytes], remove: list[str]) -> None:
        """Set `write` and remove `remove` in the working tree and the index (both squad's)."""
        if remove:
            self._repo.git.rm("-q", "--cached", "--ignore-unmatch", "--", *remove)
            for path in remove:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / path).unlink()
        for path, data in write.items():
            write_atomic(self.root / path, data)
        if write:
            self._repo.git.add("--", *write)

    @contextlib.contextmanager
    def coordinator_lock(self, stop: threading.Event | None = None,
                         on_busy: Callable[[], None] | None = None) -> Iterator[None]:
        """One coordinator at a time per repository; the kernel drops the lock if we die.

        Waits for the holder (calling `on_busy` once, so the user hears why nothing
        happens); with `stop`, raises Stopped as soon as `stop` is set.
        """
        with open(self.git_dir / COORDINATOR_LOCK, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if on_busy is not None:
                        on_busy()
                        on_busy = None
                    if stop is not None and stop.wait(0.05):
                        raise Stopped() from None
                    if stop is None:
                        time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- remotes: drop refs, fetch, push with a lease (used by squad.remote) --------------

    def knows_remote(self, remote: str) -> bool:
        """True if `remote` names a remote of this clone, or is a URL or an existing path, as
        git accepts them; checked before work that a mistyped name would waste."""
        if remote in {r.name for r in self._repo.remotes}:
            return True
        if "://" in remote or re.match(r"[^/]+:", remote):  # URL, or scp-like host:path
            return True
        return (self.root / Path(remote).expanduser()).exists()

    def ref(self, name: str) -> str | None:
        """The sha `name` points at, or None if there is no such ref."""
        try:
            return self._repo.git.rev_parse("--verify", "-q", f"{name}^{{commit}}") or None
        except git.GitCommandError:
            return None

    def refs(self, prefix: str) -> dict[str, str]:
        """ref name -> sha of every ref under `prefix` (e.g. refs/squad/drops/)."""
        out = self._repo.git.for_each_ref("--format=%(objectname) %(refname)", prefix)
        found = {}
        for line in out.splitlines():
            sha, _, name = line.partition(" ")
            found[name] = sha
        return found

    def set_ref(self, name: str, new: str | None, old: str | None) -> None:
        """Move (or with new=None delete) `name`, which must still be at `old` (None: absent)."""
        self._sync_objects()
        try:
            if new is None:
                self._repo.git.update_ref("-d", name, old or "")
            else:
                self._repo.git.update_ref("-m", "squad", name, new, old or _ZERO)
        except git.GitCommandError as exc:
            raise UnsafeRepoError(f"{self.root}: {name} moved: {_stderr(exc)}") from None

    def make_commit(self, files: dict[str, bytes], message: str, when: datetime,
                    parent: str | None) -> str:
        """Write a commit whose tree holds exactly `files`; no ref moves."""
        self._written.clear()
        tree = self._write_tree(None, {tuple(p.split("/")): d for p, d in files.items()})
        return self._commit_object(tree, parent, message, when)

    def _commit_object(self, tree: str, parent: str | None, message: str,
                       when: datetime) -> str:
        stamp = f"{IDENTITY} {int(when.timestamp())} +0000"
        lines = [f"tree {tree}"] + ([f"parent {parent}"] if parent else [])
        lines += [f"author {stamp}", f"committer {stamp}", "", message]
        return self._store("commit", "\n".join(lines).encode())

    def reparent(self, sha: str, parent: str | None) -> str:
        """The same commit (tree, identity, dates, message) on another parent."""
        kind, data = self._read(sha)
        head, _, message = data.partition(b"\n\n")
        lines = [line for line in head.split(b"\n") if not line.startswith(b"parent ")]
        if parent:
            lines.insert(1, b"parent " + parent.encode())
        return self._store(kind, b"\n".join(lines) + b"\n\n" + message)

    def commit_files(self, sha: str, limit: int = 16) -> dict[str, str]:
        """path -> blob sha of the entries in `sha`'s tree, read in-process (no git process
        per commit); links and submodules count as entries. Stops after `limit` entries."""
        found: dict[str, str] = {}
        pending = [("", self._root_tree(sha))]
        while pending and len(found) < limit:
            prefix, tree = pending.pop()
            if tree is None:
                continue
            for entry_sha, mode, name in self._tree(tree):
                if mode == _TREE_MODE:
                    pending.append((f"{prefix}{name}/", entry_sha.hex()))
                else:
                    found[f"{prefix}{name}"] = entry_sha.hex() if mode in (
                        _FILE_MODE, 0o100755) else ""
        return found

    def object_size(self, sha: str) -> int:
        return self._cat_file(lambda: int(self._repo.odb.info(bytes.fromhex(sha)).size))

    def walk(self, tips: list[str],
             stops: list[str]) -> list[tuple[str, str, dict[str, list[str]]]]:
        """(sha, ref it was reached from, trailers) of commits reachable from `tips` but not
        from `stops`, oldest first. One git process for any number of refs."""
        if not tips:
            return []
        out = self._repo.git.log(
            "--source", "--topo-order", "--reverse",
            "--format=%x1e%H%x00%S%x00%(trailers:only,unfold)", *tips,
            *[f"^{stop}" for stop in stops], "--")
        found = []
        for chunk in out.split("\x1e"):
            sha, _, rest = chunk.strip("\n").partition("\x00")
            if not sha:
                continue
            source, _, text = rest.partition("\x00")
            found.append((sha, source, _trailers(text)))
        return found

    def is_ancestor(self, older: str, newer: str) -> bool:
        try:
            self._repo.git.merge_base("--is-ancestor", older, newer)
        except git.GitCommandError as exc:
            if exc.status == 1:
                return False
            raise SquadError(f"{self.root}: git merge-base: {_stderr(exc)}") from None
        return True

    def only_squad_commits(self, base: str | None, tip: str) -> list[Commit]:
        """The commits in base..tip, oldest first; raises if any of them is not squad's."""
        spec = [tip] + ([f"^{base}"] if base else [])
        out = self._repo.git.log(*spec, "--reverse",
                                 "--format=%x1e%H%x00%an <%ae>%x00%(trailers:only,unfold)",
                                 "--")
        found = []
        for chunk in out.split("\x1e"):
            sha, _, rest = chunk.strip("\n").partition("\x00")
            if not sha:
                continue
            who, _, text = rest.partition("\x00")
            trailers = _trailers(text)
            # squad's records, the logs of runs assembled from them, and run plans
            if who != IDENTITY or not {"Squad-Drop", "Squad-Run-Start", "Squad-Plan"} & set(
                    trailers):
                raise UnsafeRepoError(
                    f"{self.root}: {self.branch()} has commit {sha[:12]}, not made by squad and "
                    "not on the remote; push or move it yourself first")
            found.append(Commit(sha, trailers))
        return found

    def reset_keep(self, target: str, expected: str) -> None:
        """Move the branch from `expected` to `target` the way `git reset --keep` does: files
        that differ follow, and git refuses if that would touch a person's uncommitted edit."""
        self.ensure_safe()
        if self.head() != expected:
            raise UnsafeRepoError(f"{self.root}: the branch moved while squad was syncing it")
        with contextlib.suppress(git.GitCommandError):  # squad's own entries lack stat data
            self._repo.git.update_index("-q", "--refresh")
        self._sync_objects()
        try:
            self._repo.git.reset("--keep", "-q", target)
        except git.GitCommandError as exc:
            raise UnsafeRepoError(
                f"{self.root}: cannot move {self.branch()} to {target[:12]}: {_stderr(exc)}"
            ) from None

    def fetch(self, remote: str, refspecs: list[str]) -> None:
        """`git fetch --prune` of exactly `refspecs`; RemoteError names what went wrong."""
        try:
            self._repo.git.fetch("--prune", "--no-tags", "--no-write-fetch-head", "-q",
                                 remote, *refspecs)
        except git.GitCommandError as exc:
            raise RemoteError(f"cannot fetch from {remote}: {_stderr(exc)}",
                              missing="couldn't find remote ref" in str(exc.stderr)) from None

    def push(self, remote: str, updates: list[tuple[str | None, str, str | None]]) -> bool:
        """Push atomically: each (new sha or None to delete, remote ref, expected old sha or
        None for absent). True if pushed, False if a lease was stale (someone moved a ref
        first); RemoteError if the remote could not be reached or refused for another reason."""
        if not updates:
            return True
        args = ["--atomic", "--porcelain", "--no-verify", "--quiet"]
        specs = []
        for new, ref, old in updates:
            args.append(f"--force-with-lease={ref}:{old or ''}")
            specs.append(f"{new or ''}:{ref}")
        try:
            self._repo.git.push(*args, remote, *specs)
        except git.GitCommandError as exc:
            text = f"{exc.stdout or ''}\n{exc.stderr or ''}"
            if any(word in text for word in
                   ("stale info", "fetch first", "non-fast-forward", "atomic push failed",
                    "failed to update ref", "cannot lock ref", "failed to lock")):
                return False
            raise RemoteError(f"cannot push to {remote}: {_stderr(exc)}") from None
        return True

    def drop_keys(self, tip: str, exclude: str | None) -> set[tuple[str, str]]:
        """(Squad-Drop, Squad-Drop-Hash) pairs of the commits in exclude..tip."""
        spec = [tip] + ([f"^{exclude}"] if exclude else [])
        out = self._repo.git.log(*spec, "--grep=^Squad-Drop: ",
                                 "--format=%x1e%(trailers:only,unfold)", "--")
        keys: set[tuple[str, str]] = set()
        for chunk in out.split("\x1e"):
            trailers = _trailers(chunk)
            keys.update(zip(trailers.get("Squad-Drop", []), trailers.get("Squad-Drop-Hash", []),
                            strict=False))
        return keys

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock file in the git dir; the kernel drops it if we die."""
        with open(self.git_dir / name, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


History = tuple[list[Change], list[tuple[str, list[str]]]]
GitRunner = Callable[[list[str], str], str]


def _history(prefix: str, run: GitRunner) -> History:
    """What `git log HEAD -- <prefix>` walks, found in one pass: every change under `prefix`
    made by a non-merge commit (newest first, with the blobs before and after and the
    commit's squad trailers), and the merges (with their parents) that change it; its git
    commands run by `run` (args, stdin -> stdout).

    git's own walk with a path (`git log -- prefix`) diffs every commit twice, once to
    simplify history and once to show it, each time into the folder that changed. Here
    the simplification compares only the id of `prefix`'s tree in each commit and its
    parents (one `cat-file --batch-check`), as git's default simplification does (a merge
    whose folder equals a parent's follows that parent only), and only the commits that
    change the folder are diffed, once (`diff-tree --stdin`). That diff takes no path: git
    would match every entry of the folder against it (a sixth of the diff's time at 10,000
    records); what else such a commit changes is left out here instead.
    """
    folder = prefix.rstrip("/")
    graph: dict[str, list[str]] = {}
    order: list[str] = []
    for line in run(["rev-list", "--parents", "HEAD"], "").splitlines():
        sha, *parents = line.split()
        graph[sha] = parents
        order.append(sha)
    if not order:
        return [], []
    query = "".join(f"{sha}:{folder}\n" for sha in order)
    out = run(["cat-file", "--batch-check=%(objectname)"], query)
    trees = {sha: (line if " " not in line else None)
             for sha, line in zip(order, out.splitlines(), strict=True)}
    shown: list[str] = []
    merges: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    stack = [order[0]]
    while stack:
        sha = stack.pop()
        if sha in seen:
            continue
        seen.add(sha)
        parents = graph.get(sha, [])
        same = [p for p in parents if trees.get(p) == trees[sha]]
        if len(parents) > 1 and same:
            stack.append(same[0])  # the merge took that parent's folder: follow it only
            continue
        if len(parents) > 1:
            merges.append((sha, parents))
        elif not same and (parents or trees[sha] is not None):
            shown.append(sha)
        stack.extend(reversed(parents))
    position = {sha: i for i, sha in enumerate(order)}
    shown.sort(key=position.__getitem__)
    merges.sort(key=lambda item: position[item[0]])
    changes: list[Change] = []
    if shown:
        raw = run([
            "diff-tree", "--stdin", "--root", "-r", "--no-renames", "--raw", "--no-abbrev",
            "--format=%x1e%H%x00%(trailers:key=Squad-Decision,valueonly,separator=%x1f)"
            "%x00%(trailers:key=Squad-Layout,valueonly,separator=%x1f)"],
            "".join(f"{sha}\n" for sha in shown))
        changes = [change for change in _changes(raw)  # a quoted path starts with '"'
                   if change.path.lstrip('"').startswith(prefix)]
    return changes, merges


class _Stopped(Exception):
    """The walk was closed before it finished."""


class RefMover:
    """One `git update-ref --stdin` for the life of a Repository: each branch move is one
    transaction in it (start, update with the expected old value, prepare, commit), so git
    takes its own ref lock and checks the old value, writes the reflog and fsyncs as a
    one-shot `update-ref` would, minus starting a git process at every commit point (a few
    ms each, on the coordinator's serial path). The reflog says "squad" for every move:
    git takes one message per process. A transaction that fails ends the process (git
    exits), and the next move starts a fresh one."""

    MESSAGE = "squad"

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def move(self, ref: str, new: str, old: str) -> str | None:
        """Move `ref` from `old` (all zeros: absent) to `new`; None when done, else what went
        wrong (git's words). A process that died mid-way may have moved the ref: callers
        check the ref before calling a fault final."""
        with self._lock:
            for fresh in (self._process is None, True):
                replies = self._transaction(ref, new, old)
                if replies == ["start: ok\n", "prepare: ok\n", "commit: ok\n"]:
                    return None
                said = self._end()
                if fresh or replies[:1] == ["start: ok\n"]:
                    break
                # A kept process that never began the transaction had ended meanwhile
                # (killed, say): nothing was done, so a fresh one tries once.
            return " ".join((said or "".join(replies) or "git update-ref ended").split())[:300]

    def _transaction(self, ref: str, new: str, old: str) -> list[str]:
        try:
            process = self._process or self._start()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(f"start\nupdate {ref} {new} {old}\nprepare\ncommit\n")
            process.stdin.flush()
            return [process.stdout.readline() for _ in range(3)]
        except OSError as exc:  # it could not start, or had died: a broken pipe
            return [f"{type(exc).__name__}: {exc}"]

    def _start(self) -> subprocess.Popen[str]:
        with _shielded():
            self._process = subprocess.Popen(
                ["git", "update-ref", "--stdin", "-m", self.MESSAGE], cwd=self._root,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, encoding="utf-8", errors="replace", start_new_session=True)
        return self._process

    def _end(self) -> str:
        """Stop the process (its stdin closed, git ends: an open transaction is aborted and
        its lock released) and return what it said on stderr."""
        process, self._process = self._process, None
        if process is None:
            return ""
        try:
            _, err = process.communicate(timeout=10)
        except (OSError, ValueError):
            err = ""
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        return err or ""

    def close(self) -> None:
        with self._lock:
            self._end()


class HistoryWalk:
    """`_history` in a thread of its own, so that a caller (`verify`) parses the
    working tree while git walks the history: most of the walk is git's time, spent on
    another core. Only plain `git` processes run in the thread (no GitPython object is
    shared), and `close()` kills the one running, so Ctrl-C or SIGTERM never waits for it.
    """

    def __init__(self, root: Path, prefix: str, unborn: bool = False) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._result: History | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(prefix, unborn),
                                        name="squad-history", daemon=True)
        self._thread.start()

    def _work(self, prefix: str, unborn: bool) -> None:
        if unborn:  # no commit yet: no history
            self._result = [], []
            return
        try:
            self._result = _history(prefix, self._git)
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def _git(self, args: list[str], stdin: str) -> str:
        with self._lock:
            if self._closed:
                raise _Stopped
            process = self._process = _ShieldedPopen(
                ["git", *args], cwd=self._root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = process.communicate(stdin.encode("utf-8"))
        finally:
            with self._lock:
                self._process = None
        if self._closed:
            raise _Stopped
        if process.returncode != 0:
            detail = " ".join(err.decode("utf-8", "replace").split())[:300]
            raise SquadError(f"{self._root}: git {args[0]} failed: {detail}")
        return out.decode("utf-8", "surrogateescape")

    def result(self) -> History:
        """The walk's changes and merges, once it is done (its error, if it failed)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise SquadError(f"{self._root}: the history walk was stopped")
        return self._result

    def close(self) -> None:
        """Stop the walk if it still runs (killing its git) and wait for its thread."""
        with self._lock:
            self._closed = True
            if self._process is not None and self._process.poll() is None:
                self._process.kill()
        self._thread.join()


def _changes(raw: str) -> Iterator[Change]:
    """The `Change`s of `git log --raw` or `diff-tree --raw` output in squad's format."""
    for chunk in raw.split("\x1e"):
        head, _, body = chunk.partition("\n")
        sha, _, rest = head.partition("\x00")
        if not sha:
            continue
        values, _, shape = rest.partition("\x00")
        ids = [v for v in values.split("\x1f") if v]
        for line in body.splitlines():
            meta, _, path = line.partition("\t")
            fields = meta.split()
            if path and len(fields) == 5:
                yield Change(sha, fields[4][:1], path, fields[2], fields[3], ids, shape.strip())


def _run_git(root: Path, args: list[str], stdin: str) -> str:
    """One git process fed `stdin` (GitPython's wrapper cannot feed a string), started like
    every git squad starts (see `_ShieldedPopen`)."""
    with _ShieldedPopen(["git", *args], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, start_new_session=True) as process:
        try:
            out, err = process.communicate(stdin.encode("utf-8"))
        except BaseException:
            process.kill()  # it is shielded from signals, not from squad
            raise
    if process.returncode:
        detail = " ".join(err.decode("utf-8", "replace").split())[:300]
        raise SquadError(f"{root}: git {args[0]} failed: {detail}")
    return out.decode("utf-8", "surrogateescape")


def _trailers(text: str) -> dict[str, list[str]]:
    trailers: dict[str, list[str]] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            trailers.setdefault(name, []).append(value)
    return trailers


class Stopped(Exception):
    """Waiting for the coordinator lock was cut short by a stop request."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a fresh temporary file beside `path` (never one a person made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".squad-tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _sync_dir(folder: Path) -> None:
    """fsync a folder, so the name of a file just renamed into it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def blob_sha(data: bytes) -> str:
    """The git blob sha of `data`, as `git hash-object` gives it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _stderr(exc: git.GitCommandError) -> str:
    text = (exc.stderr or str(exc)).strip()
    return " ".join(text.replace("stderr:", "").split()).strip("' ")[:300]


# A tree entry name that no check of GitPython's can refuse: no leading dot, nothing but
# ASCII letters, digits, `_`, `-` and `.` (so no `.git` alias, `..`, `~` short name, colon,
# backslash or trailing space).
_PLAIN_ENTRY = re.compile(rb"(100644|100755|40000|120000|160000) "
                          rb"([A-Za-z0-9_-][A-Za-z0-9_.-]*)\0(.{20})", re.DOTALL)
_MODES = {b"100644": 0o100644, b"100755": 0o100755, b"40000": 0o40000, b"120000": 0o120000,
          b"160000": 0o160000}


def _tree_entries(data: bytes) -> list[tuple[bytes, int, str]]:
    """`tree_entries_from_data` with a fast path for the plain names squad's folders hold:
    GitPython checks every name against every metadata alias, which was most of the cost
    of listing a folder of 1,000 records. Anything not plain gets GitPython's own parse."""
    out: list[tuple[bytes, int, str]] = []
    offset, end, match = 0, len(data), _PLAIN_ENTRY.match
    while offset < end:
        found = match(data, offset)
        if found is None:
            return tree_entries_from_data(data)
        mode, name, sha = found.groups()
        out.append((sha, _MODES[mode], name.decode("ascii")))
        offset = found.end()
    return out
