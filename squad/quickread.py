"""`squad log` and `squad show` answered from the log view: the read-only commands' quick way.

The long way opens the repository with GitPython, validates squad.toml with pydantic and
loads every record: about a quarter of a second of imports before the first byte, and a cost
that grows with the log. Here one `git rev-parse` names the worktree, its git dir and HEAD;
squad's folders are checked as the long way checks them; and if the log view is fresh for
HEAD and the settings file is unchanged since it was built, the answer comes from it (see
`squad.logview`). Otherwise, or if the view turns out damaged, the CLI takes the long way,
which rebuilds the view and answers from it with the same code, so both ways print the
same bytes.

What is printed is computed whole before anything is written, so a fault found halfway
never leaves half an answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from squad import graph
from squad.errors import UsageError
from squad.logquery import Query, admits_row
from squad.logview import GROUPS, Damaged, Row, View, open_regular, settings_digest, view_path
from squad.safety import check_layout

DECISIONS = "decisions"  # squad.workspace.DECISIONS, without importing the workspace
# An environment that points git elsewhere: the long way, which reads it as it always did.
_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY",
            "GIT_INDEX_FILE", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
# rich replaces `:name:` with an emoji; text that could hold one is left to rich to print.
_EMOJI_LIKE = re.compile(r":\S*?:")
WIDTH = 200  # the table's width when stdout is not a terminal (as the long way sets it)


@dataclass
class Answer:
    """What a command prints: stdout text (printed with click.echo) and stderr lines; a
    table left to rich when it is not plain enough to print by hand."""

    out: str = ""
    err: list[str] = field(default_factory=list)
    table: list[tuple[str, ...]] | None = None
    nl: bool = True


@contextmanager
def fresh_view() -> Iterator[tuple[View, Path] | None]:
    """The view of the log at HEAD of the repository here and its root, if fresh; else
    None. The view is keyed by the tree id of `decisions/` at HEAD, so a commit that leaves
    the log alone (code, a run's log) leaves its view fresh."""
    if any(name in os.environ for name in _GIT_ENV):
        yield None
        return
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "--absolute-git-dir",
                              f"HEAD:{DECISIONS}"], capture_output=True,
                             stdin=subprocess.DEVNULL)
    except OSError:
        yield None
        return
    lines = out.stdout.decode("utf-8", "surrogateescape").splitlines()
    if out.returncode or len(lines) != 3 or not _SHA1.match(lines[2]):
        yield None  # no repository, bare, unborn, no log, another object format: the long way
        return
    root, git_dir, key = Path(lines[0]), Path(lines[1]), lines[2]
    check_layout(root)  # refuses as the long way would, before anything is read
    try:
        settings = settings_digest(root)
        fd = open_regular(view_path(git_dir))
    except OSError:
        yield None
        return
    try:
        try:
            view = View.of_file(fd, key, settings)
        except Damaged:
            view = None
        yield None if view is None else (view, root)
    finally:
        os.close(fd)


def log(view: View, query: Query, as_json: bool, limit: int, all_: bool) -> Answer:
    """`squad log`: the newest page reads only its own rows; a filter reads them all."""
    filtered = query != Query()
    if filtered:
        matching = [row for row in view.rows() if admits_row(query, row.data)]
        total = len(matching)
        rows = matching if all_ else matching[-limit:]
    else:
        total = view.count
        rows = view.rows(0 if all_ else view.count - limit)
    answer = Answer()
    if len(rows) < total:
        left = total - len(rows)
        answer.err.append(f"{left} older record{'s' * (left > 1)} not shown "
                          "(--all shows every one)")
    if not total:
        answer.err.append("no matching decisions" if view.count else
                          "no decisions yet (`squad decide` or `squad run` records them)")
    if as_json:
        answer.out = json.dumps([row.data for row in rows], indent=2)
        return answer
    cells: list[tuple[str, ...]] = [("id", "date", "agent", "status", "title")]
    for row in rows:
        cells.append((f"{row.id:04d}", row.when, row.data["agent"], row.shown,
                      row.data["title"]))
    table = None if os.isatty(1) else plain_table(cells)  # a terminal's width: rich's business
    if table is None:
        answer.table = cells
    else:
        answer.out, answer.nl = table, False
    return answer


def show(view: View, record_id: int, as_json: bool, root: Path) -> Answer:
    """`squad show ID`: its row, its neighbours' rows and its committed bytes."""
    row = view.get(record_id)
    if row is None:
        raise UsageError(f"no record {record_id} in {DECISIONS}/")
    data = row.data
    groups = {label: ids for label, ids in row.graph}
    if as_json:
        return Answer(json.dumps({**data, "input_to": groups.get("input to", [])}, indent=2))
    status, later = data["current_status"], data["superseded_by"]
    head = (f"{DECISIONS}/{row.name}  (status: {status}"
            + (f", superseded by {', '.join(f'{i:04d}' for i in later)}" if later else "")
            + ")\n")
    neighbours: dict[int, Row | None] = {row.id: row}

    def line(other: int) -> str:
        if other not in neighbours:
            neighbours[other] = view.get(other)
        found = neighbours[other]
        return graph.line_of(other, None if found is None else (
            found.data["title"], found.data["agent"], found.data["current_status"]))

    picture = graph.drawn(record_id, [(label, groups.get(label, [])) for label in GROUPS],
                          line)
    blob = subprocess.run(["git", "cat-file", "blob", row.blob], cwd=root, capture_output=True,
                          stdin=subprocess.DEVNULL)
    if blob.returncode:
        raise Damaged(f"blob {row.blob} of {row.name} cannot be read")
    return Answer(head + "\n" + blob.stdout.decode("utf-8") + "\n## Graph\n\n" + picture,
                  nl=False)


def plain_table(cells: list[tuple[str, ...]]) -> str | None:
    """The table as rich prints it (no box, no edge padding, two spaces between columns,
    every cell padded to its column) when every cell is printable ASCII without anything
    rich would read as an emoji code, and the table fits the width rich is given; None:
    let rich print it."""
    for row in cells:
        for cell in row:
            if not cell.isascii() or not cell.isprintable() or _EMOJI_LIKE.search(cell):
                return None
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    if sum(widths) + 2 * (len(widths) - 1) > WIDTH:
        return None
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                   + "\n" for row in cells)
