"""The command line: parse, call the core, render. Errors become one line and an exit code."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from squad import __version__
from squad.errors import NotARepoError, SquadError, UsageError

if TYPE_CHECKING:  # the rest is imported by the commands that need it: `--help` stays quick
    import threading

    from rich.console import Console

    from squad.connection import Connection
    from squad.coordinator import Coordinator, PassReport
    from squad.events import Event
    from squad.records import Record
    from squad.workspace import Workspace


class _Stderr:
    """The stderr console, made on first use: importing rich is a cost only some commands pay."""

    _console: Any = None

    def _made(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)
        return self._console

    @property
    def console(self) -> Console:
        return cast("Console", self._made())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __enter__(self) -> Any:  # rich's Live uses the console as a context manager
        return self._made().__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self._made().__exit__(*exc)


err = _Stderr()


class SquadGroup(click.Group):
    """Turns SquadError into `squad: message` and its exit code (SQUAD_DEBUG=1 re-raises)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SquadError as exc:
            if os.environ.get("SQUAD_DEBUG"):
                raise
            _fail(exc.message, exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM; `finally` blocks have run by now
            _fail("interrupted", 130)
        except BrokenPipeError:  # `squad show 1 | head -1`: the reader has had enough (git's own
            # pipes are mended where they are used, in vcs)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # as if killed by SIGPIPE, like git in the same pipe
        except OSError as exc:  # a file squad needs is a folder, unreadable, ...: one line
            if os.environ.get("SQUAD_DEBUG"):
                raise
            if exc.filename is None:
                _crash(exc)
            _fail(f"{exc.filename}: {exc.strerror or type(exc).__name__}", 1)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug of squad's: one line, and the whole story in a file
            if os.environ.get("SQUAD_DEBUG"):
                raise
            _crash(exc)


def _crash(exc: BaseException) -> NoReturn:
    """Write the traceback to a report file outside the repository and say where it is."""
    import tempfile
    import traceback

    from squad.secrets import redact

    text = redact("".join(traceback.format_exception(exc)))
    with tempfile.NamedTemporaryFile("w", prefix="squad-crash-", suffix=".log", delete=False,
                                     encoding="utf-8") as report:
        report.write(f"squad {__version__}, {' '.join(sys.argv)}\n\n{text}")
    detail = " ".join(str(exc).split())[:200]
    _fail(f"unexpected error {type(exc).__name__}: {detail} (a bug in squad; the full report "
          f"is in {report.name}; SQUAD_DEBUG=1 shows the traceback)", 70)


def _fail(message: str, code: int) -> NoReturn:
    from squad.safety import scrub
    from squad.secrets import redact

    click.echo(f"squad: {redact(scrub(message))}", err=True)
    sys.exit(code)


def _workspace(ctx: click.Context, env: bool = False) -> Workspace:
    """The workspace of this command; with `env`, the environment's model settings apply."""
    from squad.workspace import Workspace

    if ctx.obj is None:
        ctx.obj = Workspace.open(Path.cwd(), env=os.environ if env else None)
        # Its kept git processes end, and are waited for, with the command: not left to
        # object finalizers, which a quick exit (`squad.shutdown`) does not run.
        ctx.call_on_close(ctx.obj.repo.close)
    return cast("Workspace", ctx.obj)


@click.group(cls=SquadGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="squad")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Specialist LLM agents that decide through typed, git-committed records."""
    import signal

    # SIGTERM unwinds like Ctrl-C, so every `finally` (a model server, a lock) runs;
    # commands with their own handling (run, watch, local serve) install theirs.
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def entry() -> None:
    """The `squad` program (`python -m squad` too): the commands, then a quick exit once
    what anyone could observe of shutdown is done (see `squad.shutdown`)."""
    from squad.shutdown import run

    run(lambda: main(prog_name="squad"))


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
        for record, sha in zip(report.committed, report.commits, strict=False):
            click.echo(f"{record.id:04d}  {record.title}  (committed {sha[:12]})")
        from squad.workspace import DECISIONS

        for name, why in report.quarantined:
            click.echo(f"squad: quarantined {DECISIONS}/quarantine/{name}: {why}", err=True)
    for path, kept in report.kept:
        click.echo(f"squad: kept your version of {path} as {kept}", err=True)


def _busy() -> None:
    err.print("squad: a squad run (or another squad command) holds this repository; waiting "
              "for it to finish")


def _ingest(ws: Workspace, as_json: bool = False) -> PassReport:
    from squad.coordinator import Coordinator

    report = Coordinator(ws).ingest_settled(on_busy=_busy)
    _report(report, as_json)
    return report


def _commit_drops(ws: Workspace, names: list[str], author: str | None) -> PassReport:
    """Commit exactly these drops (a person's, or an `ask`'s), not whatever else waits in
    the inbox, and say what was committed."""
    from squad.coordinator import Coordinator, PassReport

    coordinator = Coordinator(ws, author=author)
    report = PassReport()
    with coordinator.session(on_busy=_busy):
        coordinator.take_all(names, report)
    _report(report, False)
    return report


def _person(ws: Workspace) -> str | None:
    """Who a person's commit is by: git's user.name and user.email (None: squad's own)."""
    return ws.repo.user_identity()


@main.command()
@click.option("--no-agents", is_flag=True, help="Do not install the default specialists.")
@click.option("--ci", type=click.Choice(["github"]),
              help="Also write a CI workflow that runs `squad verify` and `squad replay`.")
@click.option("--install", metavar="LINE",
              help="The workflow's install command (default: pip install of this version).")
@click.option("--matrix", is_flag=True,
              help="With --ci github: also write a workflow that runs a goal's agents as a "
                   "job matrix (squad run --plan-only, squad agent, squad ingest --remote).")
@click.option("--mcp", "mcp_client", type=click.Choice(["claude", "vscode", "cursor"]),
              help="Also add `squad mcp` to that client's project MCP config (merged, never "
                   "overwritten; not committed).")
@click.pass_context
def init(ctx: click.Context, no_agents: bool, ci: str | None, install: str | None,
         matrix: bool, mcp_client: str | None) -> None:
    """Scaffold squad.toml, AGENTS.md, agents/ and decisions/ (never overwrites a file)."""
    from squad.scaffold import init as scaffold
    from squad.workspace import DECISIONS

    if install is not None and (ci is None or not install.strip()):
        raise UsageError("--install gives the CI workflow's install line: use it with --ci")
    if matrix and ci is None:
        raise UsageError("--matrix adds a CI workflow: use it with --ci github")
    ws = _workspace(ctx)
    created, sha = scaffold(ws, with_agents=not no_agents, ci=ci, install=install,
                            author=_person(ws), matrix=matrix)
    for path in created:
        click.echo(f"created {path}")
    if sha:
        click.echo(f"committed {sha[:12]} squad init ({len(created)} files)")
    if mcp_client:
        from squad.scaffold import add_mcp_config

        click.echo(add_mcp_config(ws.root, mcp_client))
    elif not created:
        click.echo("nothing to do: squad is already set up here")
    waiting = ws.inbox.ready()
    if waiting:
        err.print(f"squad: {len(waiting)} drop(s) wait in {DECISIONS}/inbox/new/; "
                  "`squad ingest` commits them")


@main.command(name="mcp")
@click.option("--http", "http_port", type=click.IntRange(0, 65535),
              help="Serve streamable HTTP on 127.0.0.1:PORT instead of stdio (0: a free port).")
@click.option("--allow-status", is_flag=True,
              help="Offer the accept and reject tools (by default a person decides statuses).")
@click.option("--agent", help="Attribute proposals to this name instead of the client's name.")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path),
              help="The repository (default: the current directory).")
def mcp_(http_port: int | None, allow_status: bool, agent: str | None,
         repo: Path | None) -> None:
    """Serve the decision log to coding agents over MCP (stdio, or HTTP with --http)."""
    try:
        from squad.mcp_server import serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("squad"):
            raise
        raise UsageError(f"squad mcp needs the MCP SDK ({exc.name} is not installed): "
                         "pip install 'squad-decisions[mcp]'") from None
    if repo is not None and "${" in str(repo):
        repo = None  # the client did not expand ${workspaceFolder}: it starts us in the project
    from squad.workspace import Workspace

    ws = Workspace.open(repo or Path.cwd())
    if agent is not None:
        from pydantic import TypeAdapter, ValidationError

        from squad.records import Agent

        try:
            agent = TypeAdapter(Agent).validate_python(agent)
        except ValidationError:
            raise UsageError(f"--agent {agent!r}: one line of 1 to 100 characters") from None
    serve(ws, http_port=http_port, agent=agent, allow_status=allow_status)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--remote", metavar="REMOTE",
              help="Also take the drops writers pushed to REMOTE, and push the records there.")
@click.pass_context
def ingest(ctx: click.Context, as_json: bool, remote: str | None) -> None:
    """One coordinator pass: commit or quarantine every complete drop, then exit."""
    if remote:
        report = _ingest_remote(_workspace(ctx), remote, as_json)
    else:
        report = _ingest(_workspace(ctx), as_json)
    if report.quarantined:
        sys.exit(1)


@main.command()
@click.option("--poll", is_flag=True, help="Poll the inbox instead of using OS file events.")
@click.option("--remote", metavar="REMOTE",
              help="Take the drops writers push to REMOTE; push the records there.")
@click.option("--interval", type=click.FloatRange(0.05), default=None,
              help="Seconds between fetches of REMOTE when idle (default 2).")
@click.pass_context
def watch(ctx: click.Context, poll: bool, remote: str | None, interval: float | None) -> None:
    """Run the coordinator until interrupted, committing every drop as it arrives."""
    from squad.coordinator import Coordinator
    from squad.watch import watch as run_watch

    ws = _workspace(ctx)
    coordinator = Coordinator(ws, log=lambda message: err.print(message))
    if remote:
        _watch_remote(coordinator, remote, interval)
        return
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
        click.option("--no-ingest", is_flag=True,
                     help="Only drop it in the inbox; `squad ingest` commits it later."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


_force = click.option("--force", is_flag=True,
                      help="Act even if the decision is already accepted, rejected or "
                           "superseded.")


def _submit(ws: Workspace, fields: dict[str, Any], no_ingest: bool,
            push: tuple[str, str] | None = None) -> None:
    """A person's record: dropped, then committed at once in their name (git's identity)."""
    from squad.records import Draft, describe, render

    fields = {k: v for k, v in fields.items() if v not in (None, (), "")}
    fields.setdefault("agent", ws.repo.user_name() or "human")
    if "decision" not in fields and fields.get("kind", "decision") == "decision":
        fields = _edit(fields)
    try:
        draft = Draft.model_validate(fields)
    except Exception as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            raise UsageError(_as_flags(describe(exc))) from None
        raise
    if push:
        return _push_drop(ws, render(draft, ws.root), *push)
    name = ws.inbox.drop(render(draft, ws.root))
    if no_ingest:
        click.echo(f"left in {ws.inbox.new.relative_to(ws.root) / name} (--no-ingest); "
                   "`squad ingest` commits it", err=True)
        return
    report = _commit_drops(ws, [name], _person(ws))
    if report.quarantined:
        sys.exit(1)


def _as_flags(message: str) -> str:
    """A validation message about a draft's field, in the words of the flag that sets it."""
    for name in ("title", "decision", "context", "consequences", "agent", "tags"):
        flag = "--tag" if name == "tags" else f"--{name}"
        if message.startswith(f"field {name}: Field required"):
            return f"{flag} is required"
        if message.startswith(f"field {name}"):
            return flag + message[len(f"field {name}"):]
    return message


def _edit(fields: dict[str, Any]) -> dict[str, Any]:
    from squad.records import Draft, parse_draft, render

    chosen = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not chosen and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("no --decision given, and no terminal to open an editor in (nor "
                         "$EDITOR); pass --title and --decision")
    skeleton = Draft.model_construct(**{"title": "", "decision": "", **fields})
    text = click.edit(render(skeleton), extension=".md", require_save=True)
    if text is None:
        raise UsageError("no decision given (the editor was closed without saving)")
    try:
        return parse_draft(text).model_dump()
    except SquadError as exc:
        raise UsageError(f"the edited decision is not valid: {exc.message}") from None


def _writer_option(fn: Any) -> Any:
    return click.option("--writer", envvar="SQUAD_WRITER", metavar="ID",
                        help="Writer id (default: this clone's, user@host+<6 hex>; env "
                             "SQUAD_WRITER).")(fn)


def _writer_id(ws: Workspace, writer: str | None) -> str:
    """The writer id given (checked) or this clone's own."""
    from squad.remote import check_writer, default_writer

    return check_writer(writer) if writer else default_writer(ws)


def _push_options(fn: Any) -> Any:
    return click.option("--push", metavar="REMOTE",
                        help="Deliver the drop through REMOTE instead of the local inbox.")(
        _writer_option(fn))


def _push_target(ws: Workspace, push: str | None,
                 writer: str | None) -> tuple[str, str] | None:
    from squad.remote import check_remote

    if not push:
        if writer:
            raise UsageError("--writer only makes sense with --push REMOTE")
        return None
    return check_remote(ws, push), _writer_id(ws, writer)


def _push_drop(ws: Workspace, text: str, remote: str, writer: str) -> None:
    """Commit the drop on this clone's writer ref, then push every waiting drop."""
    from squad.remote import DROPS, push_drops, record_drop

    name = record_drop(ws, writer, text)
    click.echo(f"dropped {name} on {DROPS}{writer}", err=True)
    report = push_drops(ws, remote, writer, log=lambda message: err.print(message))
    click.echo(f"pushed {report.pushed} drop(s) to {remote} ({DROPS}{writer})", err=True)


@main.command()
@_drop_options
@click.option("--supersedes", type=int, multiple=True, help="Id of a decision this replaces.")
@click.option("--accepted", is_flag=True, help="Record it as accepted rather than proposed.")
@_push_options
@_force
@click.pass_context
def decide(ctx: click.Context, supersedes: tuple[int, ...], accepted: bool, no_ingest: bool,
           push: str | None, writer: str | None, force: bool, **fields: Any) -> None:
    """Record a decision (from flags, or $EDITOR without --decision) and commit it.

    With --push REMOTE the drop is committed on this clone's refs/squad/drops/<writer> and
    pushed there instead, for the coordinator that watches REMOTE.
    """
    ws = _workspace(ctx)
    for old in supersedes:
        _target(ws, old, "supersede", force)
    fields["context"] = fields.pop("context_")
    fields.update(supersedes=supersedes, status="accepted" if accepted else "proposed")
    _submit(ws, fields, no_ingest, _push_target(ws, push, writer))


# What each action refuses to do to a decision in a given status, unless --force.
_REFUSED = {"accept": ("accepted", "rejected", "superseded"),
            "reject": ("rejected", "superseded"), "supersede": ("superseded",)}


def _target(ws: Workspace, record_id: int, action: str | None = None,
            force: bool = False) -> Record:
    from squad.workspace import DECISIONS

    ledger = ws.ledger()
    entry = ledger.get(record_id)
    if entry is None:
        raise UsageError(f"no decision {record_id} in {DECISIONS}/")
    if entry.record.kind != "decision":
        raise UsageError(f"{record_id:04d} is a status event, not a decision")
    status = ledger.statuses().get(record_id, "")
    if action and status in _REFUSED[action] and not force:
        later = ledger.superseded_by().get(record_id, [])
        by = f" by {', '.join(f'{i:04d}' for i in later)}" if status == "superseded" else ""
        raise UsageError(f"{record_id:04d} is already {status}{by}; pass --force to "
                         f"{action} it anyway")
    return entry.record



@main.command()
@click.argument("record_id", metavar="ID", type=int)
@click.option("--reason", default="", help="Why it is accepted.")
@click.option("--agent", help="Who accepts (default: git user.name).")
@_force
@click.pass_context
def accept(ctx: click.Context, record_id: int, reason: str, agent: str | None,
           force: bool) -> None:
    """Accept decision ID (a new record that refers to it)."""
    ws = _workspace(ctx)
    target = _target(ws, record_id, "accept", force)
    _submit(ws, {"kind": "accept", "target": record_id, "agent": agent,
                 "title": f"Accept {record_id:04d}: {target.title}"[:200],
                 "decision": reason or f"Accepted {record_id:04d}."}, False)


@main.command()
@click.argument("record_id", metavar="ID", type=int)
@click.option("--reason", required=True, help="Why it is rejected.")
@click.option("--agent", help="Who rejects (default: git user.name).")
@_force
@click.pass_context
def reject(ctx: click.Context, record_id: int, reason: str, agent: str | None,
           force: bool) -> None:
    """Reject decision ID (a new record that refers to it)."""
    ws = _workspace(ctx)
    target = _target(ws, record_id, "reject", force)
    _submit(ws, {"kind": "reject", "target": record_id, "agent": agent,
                 "title": f"Reject {record_id:04d}: {target.title}"[:200],
                 "decision": reason}, False)


@main.command()
@click.argument("record_id", metavar="ID", type=int)
@_drop_options
@_force
@click.pass_context
def supersede(ctx: click.Context, record_id: int, no_ingest: bool, force: bool,
              **fields: Any) -> None:
    """Record a new decision that replaces decision ID."""
    ws = _workspace(ctx)
    _target(ws, record_id, "supersede", force)
    fields["context"] = fields.pop("context_")
    fields["supersedes"] = (record_id,)
    _submit(ws, fields, no_ingest)


@main.command(name="log")
@click.option("--agent", "agents", multiple=True, help="Only records by this agent (repeatable).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(
    ["proposed", "accepted", "rejected", "superseded"]),
    help="Only decisions with this current status (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only records with this tag (repeatable).")
@click.option("--run", "runs", multiple=True, help="Only records of this run id (repeatable).")
@click.option("--since", metavar="DATE", help="Only records dated at or after DATE (ISO 8601).")
@click.option("--grep", metavar="TEXT",
              help="Only records whose title or text contains TEXT (any case).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array on stdout.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True,
              help="Show the newest N records.")
@click.option("--all", "all_", is_flag=True, help="Show every record (no --limit).")
@click.pass_context
def log_(ctx: click.Context, agents: tuple[str, ...], statuses: tuple[str, ...],
         tags: tuple[str, ...], runs: tuple[str, ...], since: str | None, grep: str | None,
         as_json: bool, limit: int, all_: bool) -> None:
    """List the committed decisions with their current status (the newest 50 unless told)."""
    from squad.clock import parse_instant
    from squad.logquery import Query

    try:
        after = parse_instant(since) if since else None
    except UsageError as exc:
        raise UsageError(f"--since: {exc.message}") from None
    query = Query(agents=agents, statuses=statuses, tags=tags, runs=runs, since=after,
                  grep=grep)
    _print(_answered(ctx, lambda view, root: _quick().log(view, query, as_json, limit, all_)))


@main.command()
@click.argument("record_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="A JSON object on stdout.")
@click.pass_context
def show(ctx: click.Context, record_id: int, as_json: bool) -> None:
    """Show decision ID as committed, with its current status and its place in the graph."""
    _print(_answered(ctx, lambda view, root: _quick().show(view, record_id, as_json, root)))


def _quick() -> Any:
    from squad import quickread

    return quickread


def _answered(ctx: click.Context, answer: Callable[[Any, Path], Any]) -> Any:
    """The answer of a read-only command from the log view of HEAD; if it is missing, stale
    or damaged, the log is loaded (the long way), the view rebuilt, and the answer taken from
    the new view, so both ways print the same."""
    from squad.logview import Damaged

    with _quick().fresh_view() as found:
        if found is not None:
            with contextlib.suppress(Damaged):
                return answer(*found)
    from squad import layout, logview
    from squad.workspace import DECISIONS

    ws = _workspace(ctx)
    head = _set_up(ws)
    ledger, _, files = ws.log(head)
    settings = logview.settings_digest(ws.root)
    key = ws.repo.tree_sha(DECISIONS, head)
    data = logview.build(ledger, layout.records(files), key or "0" * 40, settings)
    if key is not None:
        logview.save(logview.view_path(ws.repo.git_dir), data)
    return answer(logview.View.of_bytes(data, key or "0" * 40, settings), ws.root)


def _set_up(ws: Workspace) -> str:
    """HEAD, in a repository squad is set up in (squad.toml or decisions/ committed): a read
    command anywhere else says so, rather than print an empty log that looks clean."""
    head = ws.repo.head()
    if head is None or not (ws.repo.file_sha("squad.toml", head)
                            or ws.repo.list_dir("decisions", head)
                            or ws.repo.list_dirs("decisions", head)):
        raise NotARepoError(f"{ws.root}: squad is not set up here (no squad.toml or decisions/ "
                            "committed); `squad init` sets it up")
    return head


def _print(answer: Any) -> None:
    for line in answer.err:
        click.echo(line, err=True)
    if answer.table is None:
        click.echo(answer.out, nl=answer.nl)
        return
    from rich.console import Console
    from rich.table import Table

    header, *rows = answer.table
    table = Table(*header, box=None, pad_edge=False)
    for row in rows:
        table.add_row(*row)
    Console(highlight=False, markup=False, soft_wrap=False,
            width=200 if not sys.stdout.isatty() else None
            ).print(table)


@main.command()
@click.argument("agent")
@click.argument("task")
@click.option("--no-ingest", is_flag=True,
              help="Leave its decisions in the inbox; `squad ingest` commits them later.")
@click.option("--ingest", "and_ingest", is_flag=True, hidden=True)  # the default now
@click.option("--model", help="Model to use (beats the charter and squad.toml).")
@click.pass_context
def ask(ctx: click.Context, agent: str, task: str, no_ingest: bool, and_ingest: bool,
        model: str | None) -> None:
    """Ask one agent once: show its tool calls, print its answer, commit its decisions."""
    from squad.agent import run_agent
    from squad.charters import find_charter
    from squad.connection import connect
    from squad.coordinator import decode
    from squad.events import AgentEvent, Spawned, ToolUsed
    from squad.records import parse_draft
    from squad.workspace import DECISIONS

    ws = _workspace(ctx, env=True)
    charter = find_charter(ws.root, agent)
    if not task.strip():
        raise UsageError(f"the task is empty; say what {agent} should answer")
    connection = connect(ws.config)

    def show_event(event: AgentEvent) -> None:
        if isinstance(event, Spawned):
            err.print(f"{event.agent}: {event.model}, {len(event.inputs)} decisions in "
                      f"context ({event.omitted} left out), ~{event.prompt_tokens_estimate} "
                      "prompt tokens")
        elif isinstance(event, ToolUsed):
            mark = "ok" if event.ok else "refused"
            err.print(f"  {event.tool}({event.arguments[:120]}) -> {mark}"
                      + (f", dropped {event.drop}" if event.drop else ""))

    try:
        err.print(f"using the {connection.label}")
        result = run_agent(ws, charter, task,
                           dataclasses.replace(connection, model=model or connection.model),
                           ledger=ws.ledger(), on_event=show_event)
    finally:
        connection.close()
    if result.final and not connection.profile.guided:
        click.echo(result.final.strip())
    for name in result.drops:  # the answer, as the decision it recorded
        with contextlib.suppress(OSError, SquadError):
            draft = parse_draft(decode((ws.inbox.new / name).read_bytes()))
            click.echo(f"\n{draft.title}\n\n{draft.decision.strip()}\n")
    cost = result.cost(ws.config.prices)
    err.print(f"{result.calls} calls, {result.usage.prompt_tokens} prompt + "
              f"{result.usage.completion_tokens} completion tokens"
              + (f", ${cost:.4f}" if cost is not None else "")
              + f"; {len(result.drops)} decision(s)")
    if result.drops and no_ingest:
        for name in result.drops:
            err.print(f"left in {DECISIONS}/inbox/new/{name} (--no-ingest); `squad ingest` "
                      "commits it")
    elif result.drops and _commit_drops(ws, result.drops, None).quarantined:
        sys.exit(1)  # (an agent's decision: committed in squad's identity)
    if connection.demo:
        err.print(DEMO_NOTE)
    if result.error:
        _fail(f"agent {agent} failed: {result.error}", 1)


@main.group()
def local() -> None:
    """The embedded local model (used when no endpoint is configured)."""


@local.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0: a free port.")
def serve(port: int) -> None:
    """Keep the local model server up for later commands to reuse, until Ctrl-C."""
    import threading

    from squad.llm import local as embedded
    from squad.signals import stop_on_signals

    server = embedded.start(port)
    embedded.remember(server)
    err.print(f"serving {embedded.MODEL_NAME} at {server.base_url} (Ctrl-C to stop)")
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
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
@click.option("--plan-only", is_flag=True,
              help="Only route GOAL and commit the plan; run its agents anywhere with "
                   "`squad agent TASK-ID --push REMOTE`.")
@click.pass_context
def run_(ctx: click.Context, goal: str, agents: str | None, rounds: int | None,
         concurrency: int | None, max_agents: int | None, max_calls: int | None,
         max_tokens: int | None, max_cost: float | None, max_seconds: float | None,
         branch: bool, live: bool, as_json: bool, plan_only: bool) -> None:
    """Route GOAL to specialists, run them in parallel, commit their decisions as they land."""
    from squad import heap

    terminal = not as_json and sys.stdout.isatty()
    with heap.paused():  # the imports make objects by the hundred thousand, none garbage,
        # and the checks' git work overlaps the openai import: collect once both are done
        preload = _preload(_warm_up, terminal)  # the client (and rich) beside the git work
        from squad.connection import connect
        from squad.modes import Record
        from squad.progress import JsonLines, LiveView, print_summary
        from squad.run import Run, RunSettings, check, summarize

        ws = _workspace(ctx, env=True)
        defaults, limits = ws.config.run, ws.config.budget
        overrides = {k: v for k, v in {"calls": max_calls, "tokens": max_tokens, "cost": max_cost,
                                       "wall_seconds": max_seconds}.items() if v is not None}
        settings = RunSettings(
            goal=goal,
            agents=tuple(a.strip() for a in agents.split(",") if a.strip())
            if agents is not None else None,
            rounds=rounds or defaults.rounds, concurrency=concurrency or defaults.concurrency,
            max_agents=max_agents or defaults.max_agents,
            limits=limits.model_copy(update=overrides), branch=branch)
        # Every input, before a model server starts or a file is made (and the team, so the
        # run does not read it again).
        team = None if plan_only else check(ws, settings)
        preload.join()
    if plan_only:
        if live:
            raise UsageError("--live does not go with --plan-only: the lead's calls are "
                             "recorded so that the run can be replayed")
        settings = dataclasses.replace(settings, rounds=rounds or 1)
        return _plan_only(ws, settings, as_json)
    # Off a terminal, lines on stderr need no rich (nor the time to import it).
    say: Callable[[str], None] = err.print if terminal else partial(click.echo, err=True)
    if not as_json and not terminal:
        say("stdout is not a terminal: one JSON event per line on stdout (--json), "
            "the summary on stderr")
    connection = connect(ws.config)
    try:
        say(f"using the {connection.label}")
        view = LiveView(err.console) if terminal else JsonLines()
        run = Run(ws, settings, connection, mode=Record(cassette=not live), on_event=view,
                  notice=view.notice)
        with _interruptible(run, view, connection), view:
            outcome = run.execute(team)
    finally:
        connection.close()
    summary = summarize(outcome, run.budget.prices)
    if not as_json:
        from rich.console import Console

        titles = _titles(ws, {row.id for row in summary.decisions}, outcome.end)
        print_summary(Console(markup=False, highlight=False, stderr=not terminal, soft_wrap=True,
                              width=None if terminal else 200),
                      summary, titles)
    elif summary.nothing_decided:
        say(f"nothing was decided: {summary.nothing_decided}")
    if connection.demo:
        say(DEMO_NOTE)
    if outcome.interrupted:
        sys.exit(130)
    if not outcome.ok:
        sys.exit(1)


def _warm_up(terminal: bool) -> None:
    """What `run` imports before its first model call and its main thread would otherwise
    import itself: the openai client and its HTTP transport, and rich for a live view."""
    from squad.llm.openai_backend import warm_up

    warm_up()
    if terminal:
        import rich.live  # noqa: F401


def _preload(load: Callable[..., None], *args: object) -> threading.Thread:
    """Run `load` (imports) in a thread while this one goes on: the openai client's import is
    most of a run's start, and the checks and git reads before the first call wait on git
    processes, time the import can use. Joined before the modules are used; an import that
    fails here fails again, with its message, where the module is imported for real."""
    import threading

    def quietly() -> None:
        with contextlib.suppress(Exception):
            load(*args)

    thread = threading.Thread(target=quietly, name="squad-preload", daemon=True)
    thread.start()
    return thread


def _titles(ws: Workspace, ids: set[int], commit: str) -> dict[int, str]:
    """The titles of the records `ids` (a run's decisions) at `commit`, reading only the
    folders they are in and those records, not the whole log (nor the parsed-log cache,
    which a partial read must not prune)."""
    from squad import layout
    from squad.ledger import Ledger
    from squad.records import RECORD_NAME
    from squad.workspace import DECISIONS

    blobs: dict[str, bytes] = {}
    for folder in sorted({layout.folder_of(i) for i in ids}):
        for where in (f"{folder}/", ""):  # a log in folders, or a flat one
            for name, blob in ws.repo.list_dir(f"{DECISIONS}/{where}".rstrip("/"),
                                               commit).items():
                match = RECORD_NAME.match(name)
                if match and int(match.group(1)) in ids:
                    blobs[f"{where}{name}"] = ws.repo.blob(blob)
    return {entry.record.id: entry.record.title for entry in Ledger.from_blobs(blobs).entries}


def _plan_only(ws: Workspace, settings: Any, as_json: bool) -> None:
    from squad.connection import connect, offline
    from squad.llm.profiles import PROFILES
    from squad.run import check
    from squad.spread import plan_only

    check(ws, settings)
    # With --agents nobody routes: no model is reached, and the plan names the default
    # profile (each agent's machine records its own).
    connection = offline(PROFILES["openai"], None, "no model (--agents)") if settings.agents \
        else connect(ws.config)
    try:
        if not settings.agents:
            err.print(f"using the {connection.label}")
        plan = plan_only(ws, settings, connection, on_busy=_busy)
    finally:
        connection.close()
    if as_json:
        click.echo(json.dumps({"run": plan.run, "snapshot": plan.snapshot,
                               "tasks": [{"id": t.id, "agent": t.agent, "task": t.task}
                                         for t in plan.tasks]}))
        return
    click.echo(f"planned run {plan.run} on {plan.snapshot[:12]}: {len(plan.tasks)} task(s)")
    for task in plan.tasks:
        click.echo(f"  {task.id}  {task.task[:100]}")
    click.echo("next: push this commit (git push), then on any machine with it:")
    for task in plan.tasks:
        click.echo(f"  squad agent {task.id} --run {plan.run} --push origin")
    click.echo("and where the records are collected: squad ingest --remote origin")


@main.command(name="agent")
@click.argument("task_id", metavar="TASK-ID")
@click.option("--run", "run_id", metavar="RUN",
              help="The planned run (default: the only one at HEAD with TASK-ID).")
@click.option("--push", "remote", metavar="REMOTE", required=True,
              help="Deliver the drops and the agent's log through REMOTE.")
@_writer_option
@click.pass_context
def agent_(ctx: click.Context, task_id: str, run_id: str | None, remote: str,
           writer: str | None) -> None:
    """Run one task of a planned run (squad run --plan-only) and push what it decided."""
    from squad.connection import connect
    from squad.errors import RemoteError
    from squad.events import ToolUsed
    from squad.remote import DROPS, check_remote
    from squad.spread import deliver, delivered_here, find_plan, run_task

    ws = _workspace(ctx, env=True)
    check_remote(ws, remote)
    writer = _writer_id(ws, writer)
    plan = find_plan(ws, task_id, run_id)
    task_id = plan.task(task_id).id
    if delivered_here(ws, writer, plan.run, task_id):
        raise UsageError(f"{task_id} of run {plan.run} was already run here (on {DROPS}"
                         f"{writer}); a task counts once, so it is not run again "
                         f"(`squad push {remote}` delivers it if it still waits)")

    def opened(there: Workspace) -> Connection:
        connection = connect(there.config)
        err.print(f"using the {connection.label}")
        return connection

    def show(event: Event) -> None:
        if isinstance(event, ToolUsed):
            mark = "ok" if event.ok else "refused"
            err.print(f"  {event.tool}({event.arguments[:120]}) -> {mark}"
                      + (f", dropped {event.drop}" if event.drop else ""))

    done = run_task(ws, plan, task_id, writer, opened, on_event=show)
    err.print(f"{task_id}: {len(done.drops)} decision(s), committed on {DROPS}{writer} "
              "with the agent's log")
    try:
        report = deliver(ws, remote, writer, log=lambda message: err.print(message))
    except RemoteError as exc:
        raise RemoteError(f"{task_id} ran, but {exc.message}") from None
    click.echo(f"delivered {task_id} of run {plan.run}: pushed {report.pushed} commit(s) to "
               f"{remote} ({DROPS}{writer})")
    if done.result is not None and done.result.error:
        _fail(f"agent {done.agent} failed: {done.result.error} (delivered as failed)", 1)


DEMO_NOTE = ("note: these decisions come from the embedded demo model (SmolLM2-135M), which "
             "only shows how squad works; for real work set OPENAI_BASE_URL and "
             "OPENAI_API_KEY (or [llm] base_url and model in squad.toml)")


@contextlib.contextmanager
def _interruptible(run: Any, view: Any, connection: Any) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) stops the run at once and cleanly: "stopping…" is said, calls
    in flight are abandoned, the run commits what it has. A second Ctrl-C quits on the
    spot; the drops stay in the inbox, where only their own run could commit them."""
    import signal
    import threading

    from squad.signals import on_signals

    hits: list[int] = []
    said = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        hits.append(signum)
        if len(hits) == 1:
            run.interrupt("interrupted (Ctrl-C)" if signum == signal.SIGINT
                          else "interrupted (SIGTERM)")
            said.set()
            return
        connection.kill_now()
        os.write(2, b"\x1b[?25h" if sys.stderr.isatty() else b"")
        os.write(2, b"\nsquad: quit at once; the run's drops stay in decisions/inbox/new/ "
                    b"and are never committed without their run\n")
        os._exit(130)

    def speak() -> None:
        said.wait()
        if hits:
            view.notice("stopping... (Ctrl-C again to quit at once)")

    speaker = threading.Thread(target=speak, daemon=True, name="squad-stopping")
    speaker.start()
    try:
        with on_signals(on_signal):
            yield
    finally:
        said.set()
        speaker.join()


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
    if not run_ids:
        from squad.run import RUNS

        folder = ws.root / RUNS
        committed = set(ws.repo.list_dirs(RUNS))
        for stray in sorted(p.name for p in folder.iterdir() if p.is_dir()) \
                if folder.is_dir() else []:
            if stray not in committed:
                err.print(f"note: {RUNS}/{stray}/ is not committed (a run that was killed?), "
                          "so it is not replayed")
    if not runs:
        err.print("no recorded run to replay")
    failed = 0
    for run_id in runs:
        verdict = run_replay(ws, run_id)
        failed += not verdict.ok
        if as_json:
            click.echo(json.dumps(verdict.as_json()))
        elif verdict.ok:
            click.echo(f"ok: run {run_id} reproduced {verdict.commits} "
                       f"commit{'' if verdict.commits == 1 else 's'}")
        else:
            click.echo(f"FAILED: run {run_id}: {verdict.problem}")
            if verdict.diff:
                click.echo(verdict.diff, nl=False)
    if failed:
        sys.exit(1)


@main.command()
@click.argument("run_ids", metavar="[RUN]...", nargs=-1)
@click.option("--since", metavar="REF",
              help="Only runs, and decisions, added or changed since REF (e.g. origin/main).")
@click.option("--format", "fmt", type=click.Choice(["html", "markdown"]), default="html",
              show_default=True, help="html: a page per run; markdown: one short report.")
@click.option("-o", "--output", metavar="PATH", type=click.Path(path_type=Path),
              help="html: a folder (default squad-report/) or one .html file for one run; "
                   "markdown: a file (default: stdout).")
@click.option("--replay", "and_replay", is_flag=True,
              help="Replay each run first, so the report carries its verdict.")
@click.pass_context
def report(ctx: click.Context, run_ids: tuple[str, ...], since: str | None, fmt: str,
           output: Path | None, and_replay: bool) -> None:
    """Report recorded runs: timeline, agents, decisions with their inputs, replay verdict."""
    from squad import report as reports
    from squad.replay import replay as run_replay
    from squad.vcs import write_atomic

    ws = _workspace(ctx)
    runs = reports.select_runs(ws, run_ids, since)
    if not runs and since is None:
        raise UsageError(f"no recorded run in {reports.RUNS}/ at HEAD; `squad run` records "
                         "one, and --since REF reports the decisions added since REF")
    if and_replay:
        for run_id in runs:
            verdict = run_replay(ws, run_id)
            err.print(f"replay {run_id}: " + ("ok" if verdict.ok else f"FAILED: {verdict.problem}"))
    if fmt == "markdown":
        text = reports.markdown(ws, runs, since)
        if output is None:
            click.echo(text, nl=False)
        else:
            write_atomic(output, text.encode())
            err.print(f"wrote {output}")
        return
    for path in reports.write_html(ws, runs, output or reports.default_folder()):
        click.echo(f"wrote {path}")


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Move a flat decision log into folders of 1,000 records, in one commit."""
    from squad.migrate import migrate as run_migrate

    report = run_migrate(_workspace(ctx))
    if report.outcome == "already":
        click.echo("the decision log is in folders already; nothing to do")
    elif report.outcome == "finished":
        click.echo(f"finished carrying the working tree to {report.commit or ''}"[:60])
    else:
        click.echo(f"moved {report.moved} records into folders of 1,000 (commit "
                   f"{(report.commit or '')[:12]}); `squad verify` checks the move")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON object on stdout.")
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Check schema, hash chain, numbering, supersession and the index; exit 1 on any fault."""
    from squad.verify import count
    from squad.verify import verify as run_verify

    ws = _workspace(ctx)
    _set_up(ws)
    faults = run_verify(ws)
    if as_json:
        click.echo(json.dumps({"ok": not faults,
                               "faults": [{"path": f.path, "problem": f.problem}
                                          for f in faults]}))
    else:
        for fault in faults:
            click.echo(str(fault), err=True)
        if not faults:
            n = count(ws)
            click.echo(f"ok: {n} record{'' if n == 1 else 's'} verified")
    if faults:
        sys.exit(1)



def _ingest_remote(ws: Workspace, remote: str, as_json: bool) -> PassReport:
    from squad.coordinator import Coordinator
    from squad.remote import RemoteCoordinator

    coordinator = Coordinator(ws, log=lambda message: err.print(message))
    report = RemoteCoordinator(coordinator, remote).run_pass()
    _report(report, as_json)
    return report


def _watch_remote(coordinator: Coordinator, remote: str, interval: float | None) -> None:
    from squad.remote import POLL_SECONDS, RemoteCoordinator, watch_remote

    watch_remote(RemoteCoordinator(coordinator, remote), interval or POLL_SECONDS)
    err.print("stopped")


@main.command(name="push")
@click.argument("remote")
@_writer_option
@click.pass_context
def push_(ctx: click.Context, remote: str, writer: str | None) -> None:
    """Push this clone's drops that are still waiting (after `decide --push` could not)."""
    from squad.remote import DROPS, check_remote, push_drops

    ws = _workspace(ctx)
    check_remote(ws, remote)
    writer = _writer_id(ws, writer)
    report = push_drops(ws, remote, writer, log=lambda message: err.print(message))
    click.echo(f"pushed {report.pushed} drop(s) to {remote} ({DROPS}{writer})")


@main.command()
@click.option("--remote", metavar="REMOTE", required=True,
              help="The remote whose drop refs to prune.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_context
def gc(ctx: click.Context, remote: str, as_json: bool) -> None:
    """Remove the drop refs of writers whose drops are all taken; keep every other one."""
    from squad.remote import gc as run_gc

    report = run_gc(_workspace(ctx), remote)
    if as_json:
        click.echo(json.dumps({"pruned": report.pruned, "kept": report.kept}))
        return
    for writer in report.pruned:
        click.echo(f"pruned {writer}")
    for writer, waiting in sorted(report.kept.items()):
        click.echo(f"kept {writer}: " + (f"{waiting} drop(s) not yet taken" if waiting >= 0
                                          else "moved while pruning; try again"))


@main.command(name="merge")
@click.argument("ref")
@click.option("--check", is_flag=True,
              help="Only check that this log extends REF's (exit 1 naming the fix if not).")
@click.pass_context
def merge_(ctx: click.Context, ref: str, check: bool) -> None:
    """Merge REF into the current branch, joining the decision logs (renumbering REF's side
    unless REF is the trunk)."""
    from squad.merge import extends, merge

    ws = _workspace(ctx)
    if check:
        if not extends(ws, ref):
            _fail(f"the decision log does not extend {ref}'s: run `squad merge {ref}` and "
                  "push the result", 1)
        click.echo(f"ok: the decision log extends {ref}'s")
        return
    report = merge(ws, ref)
    if report.outcome == "up-to-date":
        click.echo(f"already up to date with {ref}")
        return
    if report.outcome == "fast-forward":
        click.echo(f"fast-forwarded to {ref} ({(report.commit or '')[:12]})")
        return
    joined = report.joined
    for old, new, title in joined.renumbered if joined else []:
        click.echo(f"renumbered {old:04d} -> {new:04d}  {title}")
    if report.outcome == "conflict":
        _fail(f"merge {ref}: git could not merge {', '.join(report.conflicts[:5])}"
              + (" and more" if len(report.conflicts) > 5 else "")
              + ": the decision log is already joined and staged; resolve those files, "
              "`git add` them and `git commit` (or `git merge --abort` to go back)", 1)
    click.echo(f"merged {ref} ({(report.commit or '')[:12]}): "
               f"{joined.appended if joined else 0} record(s) appended, "
               f"{len(joined.renumbered) if joined else 0} renumbered")
