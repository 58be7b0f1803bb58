"""`squad report`: recorded runs as self-contained HTML pages, or as markdown for a pull request.

Everything comes from git at HEAD (the runs' event logs and the decision log) plus, when one
is known, the replay verdict remembered on this machine. Pages are rendered from the
`report/` templates, which a repository can override in its own `templates/report/`; since a
pull request can change those, every template renders in jinja2's sandbox, and HTML escapes
everything it is given (decisions are written by models). Pages load nothing from anywhere:
CSS and SVG are inline and a content security policy forbids fetching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from squad import __version__, graph, layout, timeline, verdicts
from squad.errors import UsageError
from squad.ledger import Ledger
from squad.renumber import record_names
from squad.runfacts import RUNS, RunFacts, fold, read_events
from squad.templating import packaged_templates_dir
from squad.vcs import write_atomic
from squad.workspace import DECISIONS, Workspace

DIFF_LINES = 400  # a diverging request's diff beyond this is cut (the terminal has it whole)


def _autoescape(name: str | None) -> bool:
    return name is not None and (".html" in name or name.endswith(".svg.j2"))


@lru_cache(maxsize=8)
def environment(root: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if root is not None and (root / "templates").is_dir():
        loaders.append(jinja2.FileSystemLoader(root / "templates"))
    loaders.append(jinja2.FileSystemLoader(packaged_templates_dir()))
    env = ImmutableSandboxedEnvironment(loader=jinja2.ChoiceLoader(loaders),
                                        undefined=jinja2.StrictUndefined,
                                        autoescape=_autoescape, keep_trailing_newline=True,
                                        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(seconds=seconds, money=money, num=num, md=md, fence=fence,
                       fold_diff=fold_diff)
    return env


def seconds(value: float) -> str:
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    whole = round(value)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def money(value: float | None) -> str:
    return "–" if value is None else f"${value:.4f}"


def num(value: int) -> str:
    return f"{int(value):,}"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~!])")


def md(value: object) -> str:
    """Text as inert markdown: no markup, links, HTML or table breaks from model output."""
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;"))


def fence(value: str, lang: str = "") -> str:
    """A fenced code block that no backtick run in `value` can close early."""
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{value.rstrip()}\n{ticks}"


def fold_diff(value: str) -> str:
    lines = value.rstrip("\n").split("\n")
    if len(lines) <= DIFF_LINES:
        return "\n".join(lines)
    return "\n".join([*lines[:DIFF_LINES],
                      f"... {len(lines) - DIFF_LINES} more lines (see `squad replay`)"])


@dataclass
class DecisionView:
    id: int
    title: str
    agent: str
    kind: str
    target: int | None
    status: str
    date: str
    file: str
    sha: str
    run: str | None
    tags: list[str]
    inputs: list[int]
    supersedes: list[int]
    superseded_by: list[int]
    context: str
    decision: str
    consequences: str


@dataclass
class RunView:
    facts: RunFacts
    verdict: dict[str, Any] | None
    decisions: list[DecisionView] = field(default_factory=list)
    earlier: list[DecisionView] = field(default_factory=list)  # inputs from before the run


class Reporter:
    """Reads the log once and turns runs into views for the templates."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.ledger: Ledger = ws.ledger()
        self.statuses = self.ledger.statuses()
        self.later = self.ledger.superseded_by()
        self._runs: dict[str, RunView] = {}

    def decision(self, record_id: int, sha: str = "") -> DecisionView | None:
        entry = self.ledger.get(record_id)
        if entry is None:
            return None
        r = entry.record
        status = self.statuses.get(r.id) or f"{r.kind} of {r.target:04d}"
        return DecisionView(
            id=r.id, title=r.title, agent=r.agent, kind=r.kind, target=r.target, status=status,
            date=r.date.strftime("%Y-%m-%d %H:%M"), file=f"{DECISIONS}/{entry.name}", sha=sha,
            run=r.run, tags=list(r.tags), inputs=list(r.inputs), supersedes=list(r.supersedes),
            superseded_by=self.later.get(r.id, []), context=r.context, decision=r.decision,
            consequences=r.consequences)

    def run(self, run_id: str) -> RunView:
        if run_id not in self._runs:
            self._runs[run_id] = self._view(run_id)
        return self._runs[run_id]

    def _view(self, run_id: str) -> RunView:
        facts = fold(read_events(self.ws.repo, run_id))
        view = RunView(facts, verdicts.known(self.ws.repo, run_id))
        for commit in facts.commits:
            shown = self.decision(commit.id, commit.sha)
            if shown is not None:
                view.decisions.append(shown)
        here = {d.id for d in view.decisions}
        named = sorted({i for d in view.decisions for i in (*d.inputs, *d.supersedes)} - here)
        view.earlier = [d for d in (self.decision(i) for i in named) if d is not None]
        return view

    def added_since(self, ref: str) -> list[DecisionView]:
        prefix = DECISIONS + "/"
        names = {layout.split(p[len(prefix):])[1]
                 for p in self.ws.repo.changed_since(ref, DECISIONS)
                 if p.startswith(prefix) and layout.is_record(p[len(prefix):])}
        # a record moved into its folder by `squad migrate` was there already
        before = record_names(self.ws.repo, self.ws.repo.resolve(ref))
        ids = sorted(e.record.id for e in self.ledger.entries
                     if e.file in names and e.file not in before)
        return [d for d in (self.decision(i) for i in ids) if d is not None]


def select_runs(ws: Workspace, run_ids: tuple[str, ...], since: str | None) -> list[str]:
    from squad.replay import recorded_runs

    if run_ids:
        known = set(ws.repo.list_dirs(RUNS))
        for run_id in run_ids:
            if run_id not in known:
                raise UsageError(f"no recorded run {run_id} in {RUNS}/ at HEAD")
        return list(run_ids)
    return recorded_runs(ws, since)


def _render(ws: Workspace, name: str, **context: Any) -> str:
    try:
        return environment(ws.root).get_template(name).render(squad_version=__version__,
                                                              **context)
    except jinja2.TemplateError as exc:
        where = getattr(exc, "filename", None) or name
        line = getattr(exc, "lineno", None)
        raise UsageError(f"{where}{f':{line}' if line else ''}: template error: {exc}") \
            from None


def run_page(ws: Workspace, reporter: Reporter, run_id: str, index: str | None) -> str:
    view = reporter.run(run_id)
    picture = graph.layout(reporter.ledger, [d.id for d in view.decisions])
    return _render(ws, "report/run.html.j2", run=view, facts=view.facts,
                   timeline=timeline.layout(view.facts), graph=picture, index=index,
                   graph_node=graph.NODE_W, graph_h=graph.NODE_H)


def index_page(ws: Workspace, reporter: Reporter, runs: list[str],
               pages: dict[str, str]) -> str:
    views = [reporter.run(r) for r in runs]
    return _render(ws, "report/index.html.j2", runs=views, pages=pages)


def markdown(ws: Workspace, runs: list[str], since: str | None) -> str:
    reporter = Reporter(ws)
    views = [reporter.run(r) for r in runs]
    if since is not None:
        decisions = reporter.added_since(since)
    else:
        decisions = [d for v in views for d in v.decisions]
    return _render(ws, "report/report.md.j2", runs=views, decisions=decisions, since=since)


def default_folder() -> Path:
    """`squad-report/`, made to ignore itself (a `.gitignore` of `*` inside, as pytest does
    for its cache), so a later `git add .` does not commit pages squad can write again."""
    folder = Path("squad-report")
    if not folder.exists():
        folder.mkdir()
        write_atomic(folder / ".gitignore", b"# written by squad report\n*\n")
    return folder


def write_html(ws: Workspace, runs: list[str], output: Path) -> list[Path]:
    """One page per run, plus an index page unless `output` names a single .html file."""
    reporter = Reporter(ws)
    if output.suffix == ".html":
        if not runs:
            raise UsageError(f"{output}: no recorded run to report in {RUNS}/ at HEAD")
        if len(runs) != 1:
            raise UsageError(f"{output}: one .html file holds one run, and {len(runs)} were "
                             "chosen; give a folder instead")
        write_atomic(output, run_page(ws, reporter, runs[0], None).encode())
        return [output]
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: exists and is not a folder")
    pages = {run_id: f"{run_id}.html" for run_id in runs}
    written = []
    for run_id in runs:
        path = output / pages[run_id]
        write_atomic(path, run_page(ws, reporter, run_id, "index.html").encode())
        written.append(path)
    index = output / "index.html"
    write_atomic(index, index_page(ws, reporter, runs, pages).encode())
    return [index, *written]
