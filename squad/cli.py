"""The command line: parse, call the core, render. Errors become one line and an exit code."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from squad import __version__
from squad.coordinator import Coordinator, PassReport
from squad.errors import SquadError, UsageError
from squad.records import Draft, Record, describe, render
from squad.workspace import DECISIONS, Workspace

err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


class SquadGroup(click.Group):
    """Turns SquadError into `squad: message` and its exit code (SQUAD_DEBUG=1 re-raises)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SquadError as exc:
            if os.environ.get("SQUAD_DEBUG"):
                raise
            _fail(exc.message, exc.exit_code)
        except OSError as exc:  # a file squad needs is a folder, unreadable, ...: one line
            if os.environ.get("SQUAD_DEBUG") or exc.filename is None:
                raise
            _fail(f"{exc.filename}: {exc.strerror or type(exc).__name__}", 1)


def _fail(message: str, code: int) -> NoReturn:
    from squad.safety import scrub
    from squad.secrets import redact

    click.echo(f"squad: {redact(scrub(message))}", err=True)
    sys.exit(code)


def _workspace(ctx: click.Context) -> Workspace:
    if ctx.obj is None:
        ctx.obj = Workspace.open(Path.cwd())
    return ctx.obj


@click.group(cls=SquadGroup)
@click.version_option(__version__, prog_name="squad")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Specialist LLM agents that decide through typed, git-committed records."""


def _report(report: PassReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({
            "committed": [{"id": r.id, "title": r.title, "agent": r.agent}
                          for r in report.committed],
            "quarantined": [{"drop": n, "reason": why} for n, why in report.quarantined],
            "recovered": report.recovered,
            "kept": [{"path": p, "kept_as": k} for p, k in report.kept],
        }))
    else:
        for record in report.committed:
            click.echo(f"{record.id:04d}  {record.title}")
        for name, why in report.quarantined:
            click.echo(f"squad: quarantined {DECISIONS}/quarantine/{name}: {why}", err=True)
    for path, kept in report.kept:
        click.echo(f"squad: kept your version of {path} as {kept}", err=True)


def _ingest(ws: Workspace, as_json: bool = False) -> PassReport:
    coordinator = Coordinator(ws)
    report = coordinator.ingest()
    if report.waiting_for is not None:
        # `ingest` is one pass, but a file copied into the inbox a moment ago belongs to it.
        import time

        time.sleep(report.waiting_for + 0.05)
        later = coordinator.ingest()
        report.committed += later.committed
        report.quarantined += later.quarantined
        report.recovered += later.recovered
        report.kept += later.kept
    _report(report, as_json)
    return report


@main.command()
@click.option("--no-agents", is_flag=True, help="Do not install the default specialists.")
@click.option("--ci", type=click.Choice(["github"]),
              help="Also write a CI workflow that runs `squad verify` and `squad replay`.")
@click.pass_context
def init(ctx: click.Context, no_agents: bool, ci: str | None) -> None:
    """Scaffold squad.toml, AGENTS.md, agents/ and decisions/ (never overwrites a file)."""
    from squad.scaffold import init as scaffold

    ws = _workspace(ctx)
    created = scaffold(ws, with_agents=not no_agents, ci=ci)
    for path in created:
        click.echo(f"created {path}")
    if not created:
        click.echo("nothing to do: squad is already set up here")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_context
def ingest(ctx: click.Context, as_json: bool) -> None:
    """One coordinator pass: commit or quarantine every complete drop, then exit."""
    report = _ingest(_workspace(ctx), as_json)
    if report.quarantined:
        sys.exit(1)


@main.command()
@click.option("--poll", is_flag=True, help="Poll the inbox instead of using OS file events.")
@click.pass_context
def watch(ctx: click.Context, poll: bool) -> None:
    """Run the coordinator until interrupted, committing every drop as it arrives."""
    from squad.watch import watch as run_watch

    ws = _workspace(ctx)
    coordinator = Coordinator(ws, log=lambda message: err.print(message))
    err.print(f"watching {ws.inbox.path} (Ctrl-C to stop)")
    run_watch(coordinator, poll=poll)
    err.print("stopped")


def _drop_options(fn: Any) -> Any:
    options = [
        click.option("--title", help="One line saying what was decided."),
        click.option("--context", "context_", default="", help="Why a decision was needed."),
        click.option("--decision", help="What was decided."),
        click.option("--consequences", default="", help="What follows from it."),
        click.option("--tag", "tags", multiple=True, help="A tag (repeatable)."),
        click.option("--agent", help="Who decides (default: git user.name)."),
        click.option("--no-ingest", is_flag=True, help="Only drop; leave it to the coordinator."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _submit(ws: Workspace, fields: dict[str, Any], no_ingest: bool) -> None:
    fields = {k: v for k, v in fields.items() if v not in (None, (), "")}
    fields.setdefault("agent", ws.repo.user_name() or "human")
    if "decision" not in fields and fields.get("kind", "decision") == "decision":
        fields = _edit(fields)
    try:
        draft = Draft.model_validate(fields)
    except Exception as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            raise UsageError(describe(exc)) from None
        raise
    name = ws.inbox.drop(render(draft, ws.root))
    click.echo(f"dropped {ws.inbox.new.relative_to(ws.root) / name}", err=True)
    if not no_ingest:
        report = _ingest(ws)
        if report.quarantined:
            sys.exit(1)


def _edit(fields: dict[str, Any]) -> dict[str, Any]:
    from squad.records import parse_draft

    skeleton = Draft.model_construct(**{"title": "", "decision": "", **fields})
    text = click.edit(render(skeleton), extension=".md", require_save=True)
    if text is None:
        raise UsageError("no decision given (the editor was closed without saving)")
    try:
        return parse_draft(text).model_dump()
    except SquadError as exc:
        raise UsageError(f"the edited decision is not valid: {exc.message}") from None


@main.command()
@_drop_options
@click.option("--supersedes", type=int, multiple=True, help="Id of a decision this replaces.")
@click.option("--accepted", is_flag=True, help="Record it as accepted rather than proposed.")
@click.pass_context
def decide(ctx: click.Context, supersedes: tuple[int, ...], accepted: bool, no_ingest: bool,
           **fields: Any) -> None:
    """Drop a decision record (from flags, or $EDITOR without --decision) and ingest it."""
    fields["context"] = fields.pop("context_")
    fields.update(supersedes=supersedes, status="accepted" if accepted else "proposed")
    _submit(_workspace(ctx), fields, no_ingest)


def _target(ws: Workspace, record_id: int) -> Record:
    ledger = ws.ledger()
    entry = ledger.get(record_id)
    if entry is None:
        raise UsageError(f"no decision {record_id} in {DECISIONS}/")
    if entry.record.kind != "decision":
        raise UsageError(f"{record_id:04d} is a status event, not a decision")
    return entry.record


@main.command()
@click.argument("record_id", metavar="ID", type=int)
@click.option("--reason", default="", help="Why it is accepted.")
@click.option("--agent", help="Who accepts (default: git user.name).")
@click.pass_context
def accept(ctx: click.Context, record_id: int, reason: str, agent: str | None) -> None:
    """Accept decision ID (a new record that refers to it)."""
    ws = _workspace(ctx)
    target = _target(ws, record_id)
    _submit(ws, {"kind": "accept", "target": record_id, "agent": agent,
                 "title": f"Accept {record_id:04d}: {target.title}"[:200],
                 "decision": reason or f"Accepted {record_id:04d}."}, False)


@main.command()
@click.argument("record_id", metavar="ID", type=int)
@click.option("--reason", required=True, help="Why it is rejected.")
@click.option("--agent", help="Who rejects (default: git user.name).")
@click.pass_context
def reject(ctx: click.Context, record_id: int, reason: str, agent: str | None) -> None:
    """Reject decision ID (a new record that refers to it)."""
    ws = _workspace(ctx)
    target = _target(ws, record_id)
    _submit(ws, {"kind": "reject", "target": record_id, "agent": agent,
                 "title": f"Reject {record_id:04d}: {target.title}"[:200],
                 "decision": reason}, False)


@main.command()
@click.argument("record_id", metavar="ID", type=int)
@_drop_options
@click.pass_context
def supersede(ctx: click.Context, record_id: int, no_ingest: bool, **fields: Any) -> None:
    """Record a new decision that replaces decision ID."""
    ws = _workspace(ctx)
    _target(ws, record_id)
    fields["context"] = fields.pop("context_")
    fields["supersedes"] = (record_id,)
    _submit(ws, fields, no_ingest)


def _as_dict(record: Record, status: str, superseded_by: list[int]) -> dict[str, Any]:
    return {**record.model_dump(mode="json"), "current_status": status,
            "superseded_by": superseded_by}


@main.command(name="log")
@click.option("--json", "as_json", is_flag=True, help="A JSON array on stdout.")
@click.pass_context
def log_(ctx: click.Context, as_json: bool) -> None:
    """List the committed decisions with their current status."""
    ledger = _workspace(ctx).ledger()
    status, later = ledger.statuses(), ledger.superseded_by()
    if as_json:
        click.echo(json.dumps([_as_dict(e.record, status.get(e.record.id, e.record.kind),
                                        later.get(e.record.id, [])) for e in ledger.entries],
                              indent=2))
        return
    table = Table("id", "date", "agent", "status", "title", box=None, pad_edge=False)
    for entry in ledger.entries:
        record = entry.record
        shown = status.get(record.id) or f"{record.kind} {record.target:04d}"
        table.add_row(f"{record.id:04d}", record.date.strftime("%Y-%m-%d %H:%M"),
                      record.agent, shown, record.title)
    Console(highlight=False, markup=False, soft_wrap=False,
            width=200 if not sys.stdout.isatty() else None
            ).print(table)


@main.command()
@click.argument("record_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="A JSON object on stdout.")
@click.pass_context
def show(ctx: click.Context, record_id: int, as_json: bool) -> None:
    """Show decision ID as committed, with its current status."""
    ledger = _workspace(ctx).ledger()
    entry = ledger.get(record_id)
    if entry is None:
        raise UsageError(f"no record {record_id} in {DECISIONS}/")
    status = ledger.statuses().get(record_id, entry.record.kind)
    later = ledger.superseded_by().get(record_id, [])
    if as_json:
        click.echo(json.dumps(_as_dict(entry.record, status, later), indent=2))
        return
    click.echo(f"{DECISIONS}/{entry.name}  (status: {status}"
               + (f", superseded by {', '.join(f'{i:04d}' for i in later)}" if later else "")
               + ")\n")
    click.echo(render(entry.record, _workspace(ctx).root), nl=False)


@main.command()
@click.argument("agent")
@click.argument("task")
@click.option("--ingest", "and_ingest", is_flag=True, help="Ingest the agent's drops at the end.")
@click.option("--model", help="Model to use (beats the charter and squad.toml).")
@click.pass_context
def ask(ctx: click.Context, agent: str, task: str, and_ingest: bool, model: str | None) -> None:
    """Run one agent once on TASK: show its tool calls and drops (the charter author's door)."""
    from squad.agent import run_agent
    from squad.charters import find_charter
    from squad.llm.factory import connect

    ws = _workspace(ctx)
    charter = find_charter(ws.root, agent)
    ws.config = ws.config.with_env(os.environ)
    connection = connect(ws.config)
    err.print(f"using the {connection.label}")

    def show_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "spawn":
            err.print(f"{data['agent']}: {data['model']}, {len(data['inputs'])} decisions in "
                      f"context ({data['omitted']} left out), ~{data['prompt_tokens_estimate']} "
                      "prompt tokens")
        elif kind == "tool":
            mark = "ok" if data["ok"] else "refused"
            err.print(f"  {data['tool']}({data['arguments'][:120]}) -> {mark}"
                      + (f", dropped {data['drop']}" if data["drop"] else ""))

    try:
        result = run_agent(ws, charter, task, connection.backend, ledger=ws.ledger(),
                           on_event=show_event, profile=connection.profile,
                           model=model or connection.model)
    finally:
        connection.close()
    if result.final:
        click.echo(result.final.strip())
    cost = result.cost(ws.config.prices)
    err.print(f"{result.calls} calls, {result.usage.prompt_tokens} prompt + "
              f"{result.usage.completion_tokens} completion tokens"
              + (f", ${cost:.4f}" if cost is not None else "")
              + f"; {len(result.drops)} drop(s)")
    if and_ingest and result.drops:
        _ingest(ws)
    if result.error:
        _fail(f"agent {agent} failed: {result.error}", 1)


@main.group()
def local() -> None:
    """The embedded local model (used when no endpoint is configured)."""


@local.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0: a free port.")
def serve(port: int) -> None:
    """Keep the local model server up for later commands to reuse, until Ctrl-C."""
    import signal
    import threading

    from squad.llm import local as embedded

    server = embedded.start(port)
    embedded.remember(server)
    err.print(f"serving {embedded.MODEL_NAME} at {server.base_url} (Ctrl-C to stop)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            if server.process is not None and server.process.poll() is not None:
                raise UsageError("the local model server exited")
    finally:
        embedded.forget()
        server.stop()


@main.command(name="run")
@click.argument("goal")
@click.option("--agents", help="Comma-separated specialists to run (skips routing).")
@click.option("--rounds", type=click.IntRange(1, 20), help="Rounds (squad.toml [run]).")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Agents working at once.")
@click.option("--max-agents", type=click.IntRange(1, 64), help="Most specialists routed.")
@click.option("--max-calls", type=click.IntRange(0), help="Budget: model calls.")
@click.option("--max-tokens", type=click.IntRange(0), help="Budget: tokens.")
@click.option("--max-cost", type=click.FloatRange(0), help="Budget: dollars.")
@click.option("--max-seconds", type=click.FloatRange(0, min_open=True), help="Budget: seconds.")
@click.option("--branch", is_flag=True, help="Run on a new branch squad/<run-id>.")
@click.option("--live", is_flag=True,
              help="Do not record the model calls (the run cannot be replayed).")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout.")
@click.pass_context
def run_(ctx: click.Context, goal: str, agents: str | None, rounds: int | None,
         concurrency: int | None, max_agents: int | None, max_calls: int | None,
         max_tokens: int | None, max_cost: float | None, max_seconds: float | None,
         branch: bool, live: bool, as_json: bool) -> None:
    """Route GOAL to specialists, run them in parallel, commit their decisions as they land."""
    import signal

    from squad.llm.cassette import Seam
    from squad.llm.factory import connect
    from squad.progress import JsonLines, LiveView, print_summary
    from squad.run import Run, RunSettings

    ws = _workspace(ctx)
    ws.config = ws.config.with_env(os.environ)
    defaults, limits = ws.config.run, ws.config.budget
    overrides = {k: v for k, v in {"calls": max_calls, "tokens": max_tokens, "cost": max_cost,
                                   "wall_seconds": max_seconds}.items() if v is not None}
    settings = RunSettings(
        goal=goal,
        agents=tuple(a.strip() for a in agents.split(",") if a.strip()) if agents else None,
        rounds=rounds or defaults.rounds, concurrency=concurrency or defaults.concurrency,
        max_agents=max_agents or defaults.max_agents,
        limits=limits.model_copy(update=overrides), branch=branch)
    connection = connect(ws.config)
    err.print(f"using the {connection.label}")
    seam = Seam("live" if live else "record", connection.backend)
    live = not as_json and sys.stdout.isatty()
    console = Console(markup=False, highlight=False)
    view = LiveView(err) if live else JsonLines()
    run = Run(ws, settings, seam, on_event=view, profile=connection.profile,
              model=connection.model)
    previous = signal.signal(signal.SIGINT,
                             lambda *_: run.budget.interrupt("interrupted (Ctrl-C)"))
    try:
        with view:
            outcome = run.execute()
    finally:
        signal.signal(signal.SIGINT, previous)
        connection.close()
    if live:
        from squad.run import summary_json

        titles = {r.id: r.title for r in ws.ledger().records}
        print_summary(console, summary_json(outcome, ws), titles)
    if outcome.stopped and outcome.stopped.startswith("interrupted"):
        sys.exit(130)
    if not outcome.ok:
        sys.exit(1)


@main.command()
@click.argument("run_ids", metavar="[RUN_ID]...", nargs=-1)
@click.option("--since", metavar="REF", help="Only runs added or changed since REF.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run on stdout.")
@click.pass_context
def replay(ctx: click.Context, run_ids: tuple[str, ...], since: str | None,
           as_json: bool) -> None:
    """Re-execute recorded runs offline from their cassettes; exit 1 on any divergence."""
    from squad.replay import recorded_runs
    from squad.replay import replay as run_replay

    ws = _workspace(ctx)
    runs = list(run_ids) or recorded_runs(ws, since)
    if not runs:
        err.print("no recorded run to replay")
    failed = 0
    for run_id in runs:
        verdict = run_replay(ws, run_id)
        failed += not verdict.ok
        if as_json:
            click.echo(json.dumps(verdict.as_json()))
        elif verdict.ok:
            click.echo(f"ok: run {run_id} reproduced {verdict.commits} commits")
        else:
            click.echo(f"FAILED: run {run_id}: {verdict.problem}")
            if verdict.diff:
                click.echo(verdict.diff, nl=False)
    if failed:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON object on stdout.")
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Check schema, hash chain, numbering, supersession and the index; exit 1 on any fault."""
    from squad.verify import verify as run_verify

    ws = _workspace(ctx)
    faults = run_verify(ws)
    if as_json:
        click.echo(json.dumps({"ok": not faults,
                               "faults": [{"path": f.path, "problem": f.problem}
                                          for f in faults]}))
    else:
        for fault in faults:
            click.echo(str(fault), err=True)
        count = len(ws.ledger().entries) if not faults else None
        if count is not None:
            click.echo(f"ok: {count} records verified")
    if faults:
        sys.exit(1)

