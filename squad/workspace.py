"""The workspace: one repository, its settings, its clock and the paths squad owns in it.

The CLI builds one and hands it to every command, so commands stay thin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from squad.clock import Clock, default_clock
from squad.config import Config, load_config
from squad.dropbox import Inbox
from squad.ledger import Ledger
from squad.records import RECORD_NAME
from squad.safety import check_layout
from squad.vcs import Repository, open_repo

DECISIONS = "decisions"
INDEX = f"{DECISIONS}/README.md"


@dataclass
class Workspace:
    repo: Repository
    config: Config
    clock: Clock = field(default_factory=default_clock)

    @classmethod
    def open(cls, start: Path, clock: Clock | None = None) -> Workspace:
        repo = open_repo(start)
        check_layout(repo.root)
        return cls(repo, load_config(repo.root), clock or default_clock())

    @property
    def root(self) -> Path:
        return self.repo.root

    @property
    def decisions(self) -> Path:
        return self.root / DECISIONS

    @property
    def inbox(self) -> Inbox:
        return Inbox(self.decisions / "inbox")

    def ledger(self, commit: str | None = None) -> Ledger:
        """The committed log at `commit` (default HEAD)."""
        listing = self.repo.list_dir(DECISIONS, commit)
        return Ledger.from_blobs({name: self.repo.blob(sha) for name, sha in listing.items()
                                  if RECORD_NAME.match(name)})

    @property
    def quarantine(self) -> Path:
        return self.decisions / "quarantine"
