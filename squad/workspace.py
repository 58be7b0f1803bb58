"""The workspace: one repository, its settings, its clock and the paths squad owns in it.

The CLI builds one and hands it to every command, so commands stay thin.
"""

from __future__ import annotations

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
from squad.vcs import Repository, open_repo

DECISIONS = "decisions"
INDEX = f"{DECISIONS}/README.md"


@dataclass
class Workspace:
    repo: Repository
    config: Config
    clock: Clock = field(default_factory=default_clock)

    @classmethod
    def open(cls, start: Path, clock: Clock | None = None,
             env: Mapping[str, str] | None = None) -> Workspace:
        """With `env`, its SQUAD_* and OPENAI_BASE_URL settings are applied to squad.toml's
        once, here: commands that talk to a model pass it, the others read the file alone."""
        repo = open_repo(start)
        check_layout(repo.root)
        config = load_config(repo.root)
        return cls(repo, config if env is None else config.with_env(env),
                   clock or default_clock())

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
            rendered = render_index(ledger, self.root).encode()
        except Exception:  # a broken template override: the commit itself will report it
            return False
        return self.repo.blob(index) == rendered

    @property
    def quarantine(self) -> Path:
        return self.decisions / "quarantine"
