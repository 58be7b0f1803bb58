"""The workspace: one repository, its settings, its clock and the paths squad owns in it.

The CLI builds one and hands it to every command, so commands stay thin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from squad import logcache
from squad.clock import Clock, default_clock
from squad.config import Config, load_config
from squad.dropbox import Inbox
from squad.ledger import Ledger, render_index
from squad.records import RECORD_NAME
from squad.safety import check_layout
from squad.snapshot import AGENTS_MD, Snapshot
from squad.templating import Templates
from squad.vcs import Repository, open_repo

DECISIONS = "decisions"
INDEX = f"{DECISIONS}/README.md"


@dataclass
class Workspace:
    repo: Repository
    config: Config
    clock: Clock = field(default_factory=default_clock)
    env: Mapping[str, str] | None = None  # the environment applied to the config, if any
    snapshot: Snapshot | None = None  # set: the inputs are read from this commit (a run)

    @classmethod
    def open(cls, start: Path, clock: Clock | None = None,
             env: Mapping[str, str] | None = None) -> Workspace:
        """With `env`, its SQUAD_* and OPENAI_BASE_URL settings are applied to squad.toml's
        once, here: commands that talk to a model pass it, the others read the file alone."""
        repo = open_repo(start)
        check_layout(repo.root)
        config = load_config(repo.root)
        return cls(repo, config if env is None else config.with_env(env),
                   clock or default_clock(), env)

    def at(self, commit: str) -> Workspace:
        """This workspace with its inputs (AGENTS.md, charters, squad.toml, templates) read
        from `commit` instead of the working tree: what a run's round works with."""
        snapshot = Snapshot.read(self.repo, commit)
        config = snapshot.settings()
        return dataclasses.replace(
            self, snapshot=snapshot,
            config=config if self.env is None else config.with_env(self.env))

    @property
    def inputs(self) -> Path | Snapshot:
        """Where AGENTS.md and template overrides are read: the snapshot, or the tree."""
        return self.snapshot if self.snapshot is not None else self.root

    @property
    def templates(self) -> Templates:
        return self.snapshot.templates if self.snapshot is not None else self.root

    def agents_md(self) -> str | None:
        """AGENTS.md as agents are shown it (None: there is none)."""
        if self.snapshot is not None:
            return self.snapshot.agents_md
        path = self.root / AGENTS_MD
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None

    @property
    def root(self) -> Path:
        return self.repo.root

    @property
    def decisions(self) -> Path:
        return self.root / DECISIONS

    @property
    def inbox(self) -> Inbox:
        return Inbox(self.decisions / "inbox")

    def ledger(self, commit: str | None = None, checked: bool = False) -> Ledger:
        """The committed log at `commit` (default HEAD), read through the parsed-log cache.

        `checked` is for what gets committed on top of it (the coordinator): the cached parses
        must then reproduce the index committed with them, or every record is parsed from git,
        so no damaged or forged cache entry can reach a commit.
        """
        listing = self.repo.list_dir(DECISIONS, commit)
        records = {name: sha for name, sha in listing.items() if RECORD_NAME.match(name)}
        ledger = logcache.load(self.repo, records, parse_newest=checked)
        if checked and records and not self._vouches(listing.get("README.md"), ledger):
            ledger = Ledger.from_blobs({name: self.repo.blob(sha) for name, sha in records.items()})
        return ledger

    def _vouches(self, index: str | None, ledger: Ledger) -> bool:
        """Whether the committed index (blob id) is what `ledger` renders."""
        if index is None:
            return False
        try:
            rendered = render_index(ledger, self.templates).encode()
        except Exception:  # a broken template override: the commit itself will report it
            return False
        return self.repo.blob(index) == rendered

    @property
    def quarantine(self) -> Path:
        return self.decisions / "quarantine"
