"""A run's inputs as committed: AGENTS.md, the charters, squad.toml and template overrides.

A run is replayed from its commits, so what its agents are given must come from a commit,
never from the working tree: a file git ignores, a file marked skip-worktree, or an edit made
while the run goes on would otherwise reach the agents (and the records' bytes) without being
in any commit, and the replay would diverge. The run reads each round's inputs here, at the
round's snapshot commit, and works through a workspace bound to them (`Workspace.at`).
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass

from squad.charters import AGENTS_DIR, Charter, parse_charter
from squad.config import CONFIG_NAME, Config, parse_config
from squad.errors import UsageError
from squad.templating import Overrides
from squad.vcs import Repository

TEMPLATES_DIR = "templates"
AGENTS_MD = "AGENTS.md"
_FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a commit by its id, not a ref
_KEEP = 4
_kept: dict[str, Snapshot] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Snapshot:
    commit: str
    agents_md: str | None  # None: the commit has no AGENTS.md
    charters: tuple[tuple[str, bytes], ...]  # (agents/<name>.md, bytes), by name
    templates: Overrides
    config: bytes | None  # squad.toml, None if the commit has none

    @classmethod
    def read(cls, repo: Repository, commit: str) -> Snapshot:
        """The inputs at `commit`. A commit's content never changes, so a snapshot read by
        its full id is kept (a few, the newest): a run reads its start commit's inputs to
        check them, to price its calls and to run its first round, each a score of reads
        from git, and parses its charters twice."""
        if not _FULL_ID.fullmatch(commit):
            return cls._read(repo, commit)
        with _lock:
            kept = _kept.pop(commit, None)
        if kept is None:
            kept = cls._read(repo, commit)
        with _lock:
            _kept[commit] = kept  # the newest last
            while len(_kept) > _KEEP:
                del _kept[next(iter(_kept))]
        return kept

    @classmethod
    def _read(cls, repo: Repository, commit: str) -> Snapshot:
        agents_md = repo.file_at(AGENTS_MD, commit)
        listing = repo.list_dir(AGENTS_DIR, commit)
        charters = tuple((name, repo.blob(sha)) for name, sha in sorted(listing.items())
                         if name.endswith(".md") and name != "README.md")
        return cls(commit=commit,
                   agents_md=agents_md.decode("utf-8", "replace") if agents_md is not None
                   else None,
                   charters=charters,
                   templates=Overrides(tuple(_files(repo, TEMPLATES_DIR, commit))),
                   config=repo.file_at(CONFIG_NAME, commit))

    def team(self) -> dict[str, Charter]:
        """Every committed charter, by name; the first bad one stops with its file and field."""
        return dict(self._team)

    @functools.cached_property
    def _team(self) -> dict[str, Charter]:
        team = {}
        for name, data in self.charters:
            where = f"{AGENTS_DIR}/{name} at {self.commit[:12]}"
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{where}: not valid UTF-8") from None
            charter = parse_charter(text, where)
            stem = name.removesuffix(".md")
            if charter.name != stem:
                raise UsageError(f"{where}: field name: {charter.name!r} must match the file "
                                 f"name {stem!r}")
            team[stem] = charter
        return team

    def settings(self) -> Config:
        """squad.toml as committed (the environment's settings are applied by the caller)."""
        if self.config is None:
            return Config()
        return parse_config(self.config, f"{CONFIG_NAME} at {self.commit[:12]}")


def _files(repo: Repository, folder: str, commit: str) -> list[tuple[str, str]]:
    """(path under `folder`, text) of every file below `folder` at `commit`."""
    found = [(name, repo.blob(sha).decode("utf-8", "replace"))
             for name, sha in sorted(repo.list_dir(folder, commit).items())]
    for sub in sorted(repo.list_dirs(folder, commit)):
        found += [(f"{sub}/{name}", text) for name, text in _files(repo, f"{folder}/{sub}", commit)]
    return found
