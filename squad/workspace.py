"""The workspace: one repository, its settings, its clock and the paths squad owns in it.

The CLI builds one and hands it to every command, so commands stay thin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from squad import checkpoint, layout, logcache
from squad.checkpoint import Point
from squad.clock import Clock, default_clock
from squad.config import Config, load_config
from squad.dropbox import Inbox
from squad.layout import Layout
from squad.ledger import Ledger
from squad.safety import check_layout
from squad.snapshot import AGENTS_MD, Snapshot
from squad.templating import Templates
from squad.vcs import Repository, blob_sha, open_repo

DECISIONS = "decisions"
INDEX = f"{DECISIONS}/README.md"


@dataclass(frozen=True)
class Checked:
    """A log read to be committed on: its ledger, layout and listing (path inside
    decisions/ -> blob), and the cache entries vouched for (record blob -> entry sha256;
    None when the cache could not vouch and the records were parsed from git)."""

    ledger: Ledger
    layout: Layout
    files: dict[str, str]
    checks: dict[str, str] | None


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
        """The committed log at `commit` (default HEAD), in either layout, read through the
        parsed-log cache.

        `checked` is for what gets committed on top of it (the coordinator, `squad merge`,
        `squad migrate`): the cached parses must then reproduce every index page committed
        with them, or every record is parsed from git, so no damaged or forged cache entry
        can reach a commit.
        """
        return self.log(commit, checked)[0]

    def log(self, commit: str | None = None, checked: bool = False) -> tuple[Ledger, Layout,
                                                                              dict[str, str]]:
        """The ledger, the layout and the listing (path in decisions/ -> blob) at `commit`."""
        if checked:
            found = self.checked(commit)
            return found.ledger, found.layout, found.files
        files = layout.listing(self.repo, commit)
        return logcache.load(self.repo, layout.records(files)), layout.detect(files), files

    def checked(self, commit: str | None = None) -> Checked:
        """The log at `commit` as `log(commit, checked=True)` reads it, with the cache
        entries its check vouched for (see `Checked`).

        The same `decisions/` tree as a point on file is taken from the cache entries that
        point vouched for, with no listing and no pages to render; any other tree is
        checked in full, and a check that passes puts its point on file.
        """
        head = commit or self.repo.head()
        tree = self.repo.tree_sha(DECISIONS, head)
        point = checkpoint.read(self.repo, tree)
        if point is not None:
            # every path listed is a record or a page, and no record is named like a page
            records = {path: blob for path, blob in point.files.items()
                       if not path.endswith(layout.PAGE)}
            ledger = logcache.load_vouched(self.repo, records, point.checks)
            if ledger is not None:
                return Checked(ledger, layout.detect(point.files), point.files, point.checks)
        files = layout.listing(self.repo, head)
        shape = layout.detect(files)
        records = layout.records(files)
        checks: dict[str, str] = {}
        ledger = logcache.load(self.repo, records, parse_newest=True, checks=checks)
        if records and not self._vouches(files, ledger, shape, self._unvouched(records, checks)):
            ledger = Ledger.from_blobs({path: self.repo.blob(sha) for path, sha in records.items()})
            return Checked(ledger, shape, files, None)
        if tree is not None:
            checkpoint.write(self.repo, Point(tree, files, checks))
        return Checked(ledger, shape, files, checks)

    def _unvouched(self, records: dict[str, str], checks: dict[str, str]) -> set[str] | None:
        """The folders holding a record whose cache entry no earlier check vouched for under
        its path (None: every folder). The verified point on file, of whatever tree, names
        the entries its check vouched for; the pages of folders made only of those need not
        be rendered again (after a pull that added one folder's records, one page is)."""
        earlier = checkpoint.read_any(self.repo)
        if earlier is None:
            return None
        return {layout.split(path)[0] for path, blob in records.items()
                if earlier.files.get(path) != blob or earlier.checks.get(blob) is None
                or earlier.checks[blob] != checks.get(blob)}

    def _vouches(self, files: dict[str, str], ledger: Ledger, shape: Layout,
                 folders: set[str] | None = None) -> bool:
        """Whether the committed index pages are what `ledger` renders: every page exists,
        and those of `folders` (None: all) and the summary hold the same bytes."""
        pages = {path: sha for path, sha in files.items() if layout.is_page(path)}
        try:
            if set(pages) != layout.page_paths(ledger, shape):
                return False
            rendered = layout.pages(ledger, shape, self.templates,
                                    folders=folders if shape == layout.FOLDERS else None)
        except Exception:  # a broken template override: the commit itself will report it
            return False
        return all(blob_sha(data) == pages.get(path) for path, data in rendered.items())

    @property
    def quarantine(self) -> Path:
        return self.decisions / "quarantine"
