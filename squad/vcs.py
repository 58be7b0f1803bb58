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
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import git
from git.objects.fun import tree_entries_from_data

from squad.errors import NotARepoError, SquadError, UnsafeRepoError

_TREE_MODE = 0o040000
_FILE_MODE = 0o100644
_ZERO = "0" * 40
IDENTITY = "squad <squad@localhost>"


@dataclass(frozen=True)
class Commit:
    sha: str
    trailers: dict[str, list[str]] = field(default_factory=dict)


def open_repo(start: Path) -> Repository:
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise NotARepoError(
            f"{start}: not inside a git repository (run `git init` first)") from None
    if repo.bare or repo.working_tree_dir is None:
        raise NotARepoError(f"{start}: a bare repository has no working tree for squad")
    return Repository(repo)


class Repository:
    def __init__(self, repo: git.Repo) -> None:
        self._repo = repo
        self.root = Path(repo.working_tree_dir or ".").resolve()
        self.git_dir = Path(repo.git_dir)
        self._objects = Path(repo.common_dir) / "objects"
        self._trees: dict[str, list[tuple[bytes, int, str]]] = {}
        self._written: dict[str, tuple[str, bytes]] = {}  # objects of our latest commit
        self._reading = threading.Lock()

    def close(self) -> None:
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
        if self._repo.head.is_detached:
            return "HEAD is detached; check out a branch first"
        return None

    def ensure_safe(self) -> None:
        reason = self.unsafe_reason()
        if reason:
            raise UnsafeRepoError(f"{self.root}: cannot commit: {reason}; drops are kept")

    def head(self) -> str | None:
        try:
            return self._repo.head.commit.hexsha
        except ValueError:
            return None

    def user_name(self) -> str | None:
        with self._repo.config_reader() as config:
            name = config.get_value("user", "name", default="")
        return str(name).strip() or None

    def branch(self) -> str:
        return self._repo.head.ref.path  # e.g. refs/heads/main, also for an unborn branch

    # ---- reading ------------------------------------------------------------------------

    def _read(self, sha: str) -> tuple[str, bytes]:
        if sha in self._written:
            return self._written[sha]
        with self._reading:  # GitPython's cat-file process serves one caller at a time
            stream = self._repo.odb.stream(bytes.fromhex(sha))
            return stream.type.decode(), stream.read()

    def _tree(self, sha: str) -> list[tuple[bytes, int, str]]:
        if sha not in self._trees:
            kind, data = self._read(sha)
            if kind != "tree":
                raise SquadError(f"git object {sha} is a {kind}, not a tree")
            self._trees[sha] = tree_entries_from_data(data)
        return self._trees[sha]

    def _root_tree(self, commit: str | None) -> str | None:
        if commit is None:
            return None
        _, data = self._read(commit)
        return data[5:45].decode()

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

    def squad_commits(self, key: str) -> Iterator[Commit]:
        """Commits reachable from HEAD whose message has a `key:` trailer, newest first."""
        if self.head() is None:
            return
        out = self._repo.git.log(
            "HEAD", f"--grep=^{key}: ", "--format=%H%x00%(trailers:only,unfold)%x1e")
        for chunk in out.split("\x1e"):
            sha, _, text = chunk.strip("\n").partition("\x00")
            if not sha:
                continue
            trailers: dict[str, list[str]] = {}
            for line in text.splitlines():
                name, sep, value = line.partition(": ")
                if sep:
                    trailers.setdefault(name, []).append(value)
            yield Commit(sha, trailers)

    # ---- writing ------------------------------------------------------------------------

    def _store(self, kind: str, data: bytes) -> str:
        raw = f"{kind} {len(data)}\0".encode() + data
        sha = hashlib.sha1(raw).hexdigest()
        path = self._objects / sha[:2] / sha[2:]
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            tmp = path.parent / f"tmp_obj_{os.getpid()}_{sha[:8]}"
            tmp.write_bytes(zlib.compress(raw, 1))
            os.replace(tmp, path)
        if kind != "tree":
            self._written[sha] = (kind, data)
        return sha

    def _write_tree(self, base: str | None, files: dict[tuple[str, ...], bytes]) -> str:
        entries = {n: (s, m) for s, m, n in (self._tree(base) if base else [])}
        nested: dict[str, dict[tuple[str, ...], bytes]] = {}
        for parts, data in files.items():
            if len(parts) == 1:
                entries[parts[0]] = (bytes.fromhex(self._store("blob", data)), _FILE_MODE)
            else:
                nested.setdefault(parts[0], {})[parts[1:]] = data
        for name, sub in nested.items():
            old = entries.get(name)
            old_sha = old[0].hex() if old and old[1] == _TREE_MODE else None
            entries[name] = (bytes.fromhex(self._write_tree(old_sha, sub)), _TREE_MODE)
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

    def commit(self, files: dict[str, bytes], message: str, when: datetime,
               parent: str | None) -> str:
        """Commit `files` on top of `parent` and move the branch, which must still be at
        `parent`. Returns the new commit's sha. Working tree and index follow via `settle`."""
        self.ensure_safe()
        self._written.clear()
        tree = self._write_tree(self._root_tree(parent),
                                {tuple(path.split("/")): data for path, data in files.items()})
        stamp = f"{IDENTITY} {int(when.timestamp())} +0000"
        lines = [f"tree {tree}"] + ([f"parent {parent}"] if parent else [])
        lines += [f"author {stamp}", f"committer {stamp}", "", message]
        sha = self._store("commit", "\n".join(lines).encode())
        try:
            self._repo.git.update_ref("-m", f"squad: {message.splitlines()[0]}",
                                      self.branch(), sha, parent or _ZERO)
        except git.GitCommandError as exc:
            raise UnsafeRepoError(
                f"{self.root}: the branch moved while squad was committing: "
                f"{_stderr(exc)}; drops are kept") from None
        return sha

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

    def index_entries(self, *prefixes: str) -> dict[str, str]:
        """path -> blob sha of the user's index entries under the prefixes (or paths)."""
        out = self._repo.git.ls_files("-s", "--", *prefixes)
        entries = {}
        for line in out.splitlines():
            meta, _, path = line.partition("\t")
            entries[path] = meta.split()[1]
        return entries

    def changes_to(self, prefix: str) -> Iterator[tuple[str, str, str, list[str]]]:
        """(commit, status letter, path, Squad-Decision values) for every change under prefix."""
        if self.head() is None:
            return
        out = self._repo.git.log(
            "HEAD", "--no-renames", "--name-status",
            "--format=%x1e%H%x00%(trailers:key=Squad-Decision,valueonly,separator=%x1f)",
            "--", prefix)
        for chunk in out.split("\x1e"):
            head, _, body = chunk.partition("\n")
            sha, _, values = head.partition("\x00")
            if not sha:
                continue
            ids = [v for v in values.split("\x1f") if v]
            for line in body.splitlines():
                letter, _, path = line.partition("\t")
                if path:
                    yield sha, letter[:1], path, ids

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
        return self._repo.git.rev_list(f"{base}..{tip}").split()

    def changed_since(self, ref: str, prefix: str) -> list[str]:
        """Paths under `prefix` that any commit since `ref` added, changed or removed (also
        those added and removed again: a run that came and went is still noticed)."""
        try:
            self._repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}")
            out = self._repo.git.log("--format=", "--name-only", "--no-renames", "-m",
                                     f"{ref}..HEAD", "--", prefix)
        except git.GitCommandError as exc:
            raise SquadError(f"--since {ref}: {_stderr(exc) or 'not a commit'}") from None
        return sorted({line for line in out.splitlines() if line})

    @contextlib.contextmanager
    def coordinator_lock(self, stop: threading.Event | None = None) -> Iterator[None]:
        """One coordinator at a time per repository; the kernel drops the lock if we die.

        Waits for the holder; with `stop`, raises Stopped as soon as `stop` is set.
        """
        with open(self.git_dir / "squad.lock", "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if stop is not None and stop.wait(0.05):
                        raise Stopped() from None
                    if stop is None:
                        time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


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


def blob_sha(data: bytes) -> str:
    """The git blob sha of `data`, as `git hash-object` gives it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _stderr(exc: git.GitCommandError) -> str:
    text = (exc.stderr or str(exc)).strip()
    return " ".join(text.replace("stderr:", "").split()).strip("' ")[:300]
