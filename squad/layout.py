"""Where records live inside decisions/, and the index pages that list them.

Two layouts, told apart by what the folder holds, so no setting can disagree with the tree:

- flat (every log before folders existed): `decisions/NNNN-slug.md`, and one index,
  `decisions/README.md`, with a row per record. A commit rewrites a tree entry and an index
  row per record in the log, so its cost grows with the log.
- folders (new logs, and flat ones after `squad migrate`): a record lives in the folder of
  its thousand, `decisions/012/12345-slug.md`; each folder has a page, `README.md`, with its
  records' rows and current statuses; `decisions/README.md` is a bounded summary (counts per
  status, a link per folder, the newest records). A commit rewrites one folder of at most
  1,000 entries, its page, the pages of records whose status it changes, and the summary.

A log is flat when `decisions/` directly holds a record file (or, empty, only the flat index an
earlier squad wrote); otherwise it uses folders: a new log does. Paths inside decisions/ are
the ledger's `Entry.name`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from operator import attrgetter
from typing import TYPE_CHECKING, Literal

from squad import templating
from squad.ledger import Entry, Ledger, render_index, rows_of
from squad.records import RECORD_NAME

if TYPE_CHECKING:
    from squad.vcs import Repository

Layout = Literal["flat", "folders"]
FLAT: Layout = "flat"
FOLDERS: Layout = "folders"
TRAILER = ("Squad-Layout", "folders-1000")  # names the one commit that migrates a flat log
PER_FOLDER = 1000
NEWEST = 100  # rows of the newest records on the summary page
PAGE = "README.md"
FOLDER = re.compile(r"^\d{3,}$")


def folder_of(record_id: int) -> str:
    return f"{record_id // PER_FOLDER:03d}"


def place(name: str, layout: Layout) -> str:
    """The path inside decisions/ of the record file `name` in `layout`."""
    if layout == FLAT:
        return name
    match = RECORD_NAME.match(name)
    return f"{folder_of(int(match.group(1)))}/{name}" if match else name


def split(path: str) -> tuple[str, str]:
    """(folder, file name) of a path inside decisions/; folder is "" at the top."""
    folder, _, name = path.rpartition("/")
    return folder, name


def is_record(path: str) -> bool:
    """A record file, directly in decisions/ or in a numbered folder (wherever it belongs:
    whether it is at its place is `verify`'s question)."""
    return _RECORD_PATH.match(path) is not None


# `RECORD_NAME`, alone or under a `FOLDER`, in one match: asked of every path of a long log
_RECORD_PATH = re.compile(r"^(?:\d{3,}/)?" + RECORD_NAME.pattern.removeprefix("^"))


def is_page(path: str) -> bool:
    folder, name = split(path)
    return name == PAGE and (folder == "" or bool(FOLDER.match(folder)))


def owned(path: str) -> bool:
    """The files inside decisions/ that squad writes: records and index pages."""
    return is_record(path) or is_page(path)


def listing(repo: Repository, commit: str | None = None) -> dict[str, str]:
    """path inside decisions/ -> blob sha of every record and page at `commit` (default
    HEAD), in either layout: one tree read per numbered folder."""
    from squad.workspace import DECISIONS

    top = repo.list_dir(DECISIONS, commit)
    found = {name: sha for name, sha in top.items() if owned(name)}
    for folder in repo.list_dirs(DECISIONS, commit):
        if FOLDER.match(folder):
            for name, sha in repo.list_dir(f"{DECISIONS}/{folder}", commit).items():
                if owned(f"{folder}/{name}"):
                    found[f"{folder}/{name}"] = sha
    return found


def records(files: dict[str, str]) -> dict[str, str]:
    """Only the records of a listing."""
    return {path: sha for path, sha in files.items() if is_record(path)}


def detect(files: Iterable[str]) -> Layout:
    """The layout of a listing: flat if a record sits directly in decisions/; else folders
    if a numbered folder holds a record or page; else flat if there is an index (an empty
    log made before folders existed, which a replay must see as it was); else folders
    (a new log)."""
    paths = set(files)
    if any("/" not in path and is_record(path) for path in paths):
        return FLAT
    if any("/" in path for path in paths):
        return FOLDERS
    return FLAT if PAGE in paths else FOLDERS


def by_name(files: dict[str, str]) -> dict[str, str]:
    """record file name -> blob sha, whatever folder each is in."""
    return {split(path)[1]: sha for path, sha in files.items() if is_record(path)}


# ---- pages ------------------------------------------------------------------------------

def pages(ledger: Ledger, layout: Layout, root: templating.Templates = None,
          folders: Iterable[str] | None = None) -> dict[str, bytes]:
    """path inside decisions/ -> bytes of the index pages: all of them, or with `folders`
    only those folders' pages and the summary (what a commit that touches them rewrites).
    Costs what those pages hold, not what the log holds."""
    if layout == FLAT:
        return {PAGE: render_index(ledger, root).encode("utf-8")}
    groups = _bounds(ledger)
    wanted = None if folders is None else set(folders)
    entries = ledger.entries
    out = {f"{folder}/{PAGE}": _page(ledger, folder, entries[start:stop], root)
           for folder, start, stop in groups if wanted is None or folder in wanted}
    out[PAGE] = _summary(ledger, groups, root).encode("utf-8")
    return out


def page_paths(ledger: Ledger, layout: Layout) -> set[str]:
    """The paths inside decisions/ of every index page `pages` writes for `ledger`."""
    if layout == FLAT:
        return {PAGE}
    return {f"{folder}/{PAGE}" for folder, _, _ in _bounds(ledger)} | {PAGE}


def touched(ledger: Ledger, entry: Entry) -> set[str]:
    """The folders whose pages change when `entry` joins `ledger` (before or after)."""
    return {folder_of(i) for i in ledger.affected(entry.record)}


_ID = attrgetter("record.id")


def _bounds(ledger: Ledger) -> list[tuple[str, int, int]]:
    """(folder, start, stop) of each folder holding records, in order, as indexes into
    `ledger.entries` (in id order): one bisection per folder, no scan and no copies, so a
    commit's summary page costs what the summary holds."""
    entries, out, start = ledger.entries, [], 0
    while start < len(entries):
        number = _ID(entries[start]) // PER_FOLDER
        stop = bisect.bisect_left(entries, (number + 1) * PER_FOLDER, lo=start, key=_ID)
        out.append((folder_of(number * PER_FOLDER), start, stop))
        start = stop
    return out


def _page(ledger: Ledger, folder: str, entries: list[Entry], root: templating.Templates) -> bytes:
    rows = rows_of(ledger, entries, root, link=lambda entry: entry.file)
    return templating.render("index_page.md.j2", root, folder=folder, rows=rows,
                             first=f"{entries[0].record.id:04d}",
                             last=f"{entries[-1].record.id:04d}").encode("utf-8")


def _summary(ledger: Ledger, groups: list[tuple[str, int, int]],
             root: templating.Templates) -> str:
    entries = ledger.entries
    newest = entries[-NEWEST:]
    folders = [{"name": folder, "page": f"{folder}/{PAGE}", "count": stop - start,
                "first": f"{_ID(entries[start]):04d}", "last": f"{_ID(entries[stop - 1]):04d}"}
               for folder, start, stop in groups]
    return templating.render("index_summary.md.j2", root, total=len(ledger.entries),
                             counts=ledger.counts(), folders=folders, newest=len(newest),
                             rows=rows_of(ledger, newest, root,
                                          link=lambda entry: place(entry.file, FOLDERS)))
