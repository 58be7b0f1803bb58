"""What guided mode shows a weak model before it decides, and the placeholders it may not file.

A small model cannot be trusted to look around, so squad looks for it: the repository's own
files (squad's folders left out, they crowd out `src/` after a few runs), the README and the
files the task names first, and a few of those files read within a fixed character budget.
All of it follows from the task and the files at the run's snapshot, so a replay sees the
same bytes. Placeholder records ("Title of Decision", a charter's own heading) are refused
like any other tool error, so the model gets to try again.
"""

from __future__ import annotations

import posixpath
import re

from squad.charters import Charter

SQUAD_OWN = (".squad/", "decisions/", "agents/", "templates/", ".github/workflows/squad.yml",
             "squad.toml")
MAX_LISTED = 60
MAX_READ = 3  # files read for the model
READ_CHARS = 4_000  # all of them together: the embedded model has an 8k-token window
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{2,}")
PLACEHOLDERS = frozenset({
    "title", "title of decision", "title of the decision", "decision title", "decision",
    "one short line", "short title", "a short title", "your title", "untitled", "todo", "tbd",
    "example", "string", "context", "consequences", "decision record", "my decision",
    "the decision", "new decision", "your decision", "what was decided"})


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def own_files(listing: list[str]) -> list[str]:
    """The repository's files, without squad's own folders and the tool's trailing note."""
    return [path for path in listing
            if path and not path.startswith("... and ") and not path.startswith(SQUAD_OWN)]


def named_by(task: str, files: list[str]) -> list[str]:
    """Files the task names, by path, file name or stem ("orders" names `shop/orders.py`)."""
    words = {w.casefold().rstrip(".") for w in _WORD.findall(task)}
    named = []
    for path in files:
        name = posixpath.basename(path).casefold()
        stem = name.rsplit(".", 1)[0]
        if path.casefold() in words or name in words or (len(stem) >= 3 and stem in words):
            named.append(path)
    return named


def survey(listing: list[str], task: str) -> tuple[list[str], list[str]]:
    """(files to show, in order, at most MAX_LISTED; files to read, at most MAX_READ)."""
    files = own_files(listing)
    readmes = [p for p in files if "/" not in p and p.casefold().startswith("readme")]
    named = [p for p in named_by(task, files) if p not in readmes]
    first = readmes[:1] + named
    shown = first + [p for p in files if p not in first]
    if not named:  # nothing named: the first few of the repository's own non-doc files
        named = [p for p in files if p not in readmes and not p.endswith((".md", ".txt"))]
    return shown[:MAX_LISTED], (readmes[:1] + named)[:MAX_READ]


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a line end, saying how much was left out."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    cut = cut[: cut.rindex("\n")] if "\n" in cut else cut
    return f"{cut}\n[... {len(text) - len(cut)} more characters not shown]"


def placeholder(title: str, charter: Charter) -> str | None:
    """Why `title` is a template's placeholder rather than a decision, or None."""
    norm = _norm(title)
    if not re.search(r"[^\W\d_]", title):
        return f"the title {title!r} has no words; say what you decided"
    headings = {_norm(h) for h in re.findall(r"^#+\s*(.+?)\s*$", charter.body, re.MULTILINE)}
    headings |= {_norm(charter.name), _norm(charter.role)}
    if norm in PLACEHOLDERS or norm in headings:
        return (f"the title {title!r} is a placeholder (a template's or your charter's "
                "heading), not a decision; write a title that says what you decided "
                "about the task")
    return None
