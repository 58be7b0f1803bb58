"""`squad mcp`: the decision log as an MCP server (the only module that imports `mcp`).

Coding agents (Claude Code, Copilot, Cursor, ...) read decisions and propose new ones through
typed tool calls instead of editing markdown: a proposal goes through the same validation as
the agents' `record_decision` and is committed by the coordinator, so the log stays numbered,
chained and verifiable whoever writes to it. Statuses are a person's call: `accept` and
`reject` exist only when the server is started with `--allow-status`.

The protocol work is the official SDK's (`MCPServer`); what the tools do is `squad.service`.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from squad import __version__
from squad.errors import UsageError
from squad.service import DecisionService, Refused
from squad.tools import TOOL_SPECS
from squad.workspace import Workspace

DEFAULT_AGENT = "mcp-client"
ASSIGNED = ("id", "date", "prev")
_DOC = TOOL_SPECS["record_decision"]["function"]["parameters"]["properties"]
Status = Literal["proposed", "accepted", "rejected", "superseded"]
INSTRUCTIONS = (
    "This server is the repository's decision log (squad). Before changing how something is "
    "built, search the decisions; to record a decision, call propose_decision. Never write "
    "or edit files under decisions/ yourself: squad numbers, dates and commits each record.")

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                         open_world_hint=False)


def _ok(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(data, indent=1))],
                          structured_content=data)


def _error(message: str) -> CallToolResult:
    """A refusal the model can act on, worded like `record_decision`'s."""
    return CallToolResult(content=[TextContent(type="text", text="error: " + " ".join(
        message.split()))], is_error=True)


def _answer(work: Callable[[], dict[str, Any]]) -> CallToolResult:
    try:
        return _ok(work())
    except Refused as exc:
        return _error(exc.message)


def client_agent(ctx: Context, configured: str | None) -> str:
    """Who a proposal is attributed to: the configured name, else the client's own name."""
    if configured:
        return configured
    params = ctx.session.client_params
    name = params.client_info.name if params is not None and params.client_info else ""
    name = " ".join(name.split())[:100]
    return name or DEFAULT_AGENT


def _argument_guard(tools: dict[str, set[str]]) -> Callable[..., Awaitable[Any]]:
    """Refuse a call that sets id, date or prev, or any argument the tool does not have.

    The SDK would silently drop unknown arguments; a proposal that tries to assign what
    the coordinator assigns must hear why it was refused instead.
    """

    async def guard(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        params = ctx.params if isinstance(ctx.params, dict) else {}
        if ctx.method == "tools/call" and params.get("name") in tools:
            given = params.get("arguments") or {}
            if isinstance(given, dict):
                known = tools[params["name"]]
                assigned = [key for key in ASSIGNED if key in given and key not in known]
                if assigned and params["name"] == "propose_decision":
                    return _error(f"a proposal may not set {', '.join(assigned)}: the "
                                  "coordinator assigns them")
                unknown = sorted(set(given) - known)
                if unknown:
                    return _error(f"unknown argument {unknown[0]!r}; the arguments are: "
                                  + ", ".join(sorted(known)))
        return await call_next(ctx)

    return guard


def build(service: DecisionService, *, agent: str | None = None,
          allow_status: bool = False) -> MCPServer:
    """The MCP server over `service`; `agent` overrides the client's name as the author."""
    tools: dict[str, set[str]] = {}
    app: MCPServer = MCPServer("squad", version=__version__, instructions=INSTRUCTIONS,
                               log_level="WARNING",
                               middleware=[cast(Any, _argument_guard(tools))])

    @app.tool(annotations=_READ)
    def search_decisions(
            query: Annotated[str, Field(description="Words that must all appear in the title "
                                        "or body (case-insensitive). Empty: every decision.")
                             ] = "",
            tags: Annotated[list[str] | None, Field(description="Only decisions with all of "
                                                    "these tags.")] = None,
            status: Annotated[Status | None, Field(description="Only decisions with this "
                                                   "current status.")] = None,
            agent: Annotated[str | None, Field(description="Only decisions by this agent.")
                             ] = None,
            limit: Annotated[int, Field(description="At most this many results.", ge=1,
                                        le=500)] = 20) -> CallToolResult:
        """Search the committed decision log: id, title, current status, date, agent, tags and
        a snippet of each match, title matches first, then newest."""
        return _answer(lambda: {"results": service.search(query, tags or (), status, agent,
                                                          limit)})

    @app.tool(annotations=_READ)
    def get_decision(id: Annotated[int, Field(description="The record's id, e.g. 3.", ge=1)]
                     ) -> CallToolResult:
        """One committed record in full: its sections, current status, what it supersedes,
        what superseded it, and the decisions its author had in context (inputs)."""
        return _answer(lambda: service.get(id))

    @app.tool(annotations=_READ)
    def log(since: Annotated[int | str | None, Field(description="A record id (records after it) "
                                               "or an ISO date (records on or after it).")
                             ] = None,
            status: Annotated[Status | None, Field(description="Only decisions with this "
                                                   "current status.")] = None,
            limit: Annotated[int, Field(description="The newest this many records.", ge=1,
                                        le=500)] = 50) -> CallToolResult:
        """The recent decision log in id order, like `squad log --json`."""
        return _answer(lambda: {"records": service.log(since, status, limit)})

    @app.tool(annotations=_WRITE)
    def propose_decision(
            ctx: Context,
            title: Annotated[str, Field(description=_DOC["title"]["description"])],
            context: Annotated[str, Field(description=_DOC["context"]["description"])],
            decision: Annotated[str, Field(description=_DOC["decision"]["description"])],
            consequences: Annotated[str, Field(description=_DOC["consequences"]["description"])],
            tags: Annotated[list[str] | None, Field(description=_DOC["tags"]["description"])
                            ] = None,
            supersedes: Annotated[list[int] | None,
                                  Field(description=_DOC["supersedes"]["description"])] = None,
    ) -> CallToolResult:
        """Propose one decision for the team's log. squad validates it, numbers, dates and
        commits it (status: proposed; a person accepts or rejects it). Returns the new id."""
        author = client_agent(ctx, agent)
        return _answer(lambda: service.propose(author, title, context, decision, consequences,
                                               tags or (), supersedes or ()))

    if allow_status:
        @app.tool(annotations=_WRITE)
        def accept(ctx: Context,
                   id: Annotated[int, Field(description="The decision to accept.", ge=1)],
                   reason: Annotated[str, Field(description="Why it is accepted.")] = ""
                   ) -> CallToolResult:
            """Accept decision `id` (recorded as a new accept record that refers to it)."""
            author = client_agent(ctx, agent)
            return _answer(lambda: service.set_status(author, id, "accept", reason))

        @app.tool(annotations=_WRITE)
        def reject(ctx: Context,
                   id: Annotated[int, Field(description="The decision to reject.", ge=1)],
                   reason: Annotated[str, Field(description="Why it is rejected.")]
                   ) -> CallToolResult:
            """Reject decision `id` (recorded as a new reject record that refers to it)."""
            author = client_agent(ctx, agent)
            return _answer(lambda: service.set_status(author, id, "reject", reason))

    @app.resource("decision://{id}", name="decision", mime_type="text/markdown",
                  description="A committed decision record, as its markdown file.")
    def decision_resource(id: str) -> str:
        if not id.isdigit():
            raise ResourceNotFoundError(f"decision://{id}: an id is a number")
        try:
            return service.record_text(int(id))
        except Refused as exc:
            raise ResourceNotFoundError(exc.message) from None

    @app.resource("squad://AGENTS.md", name="AGENTS.md", mime_type="text/markdown",
                  description="How to work in this repository, as committed.")
    def agents_md() -> str:
        try:
            return service.agents_md()
        except Refused as exc:
            raise ResourceNotFoundError(exc.message) from None

    @app.prompt(name="decisions_for_task",
                description="Prime a coding agent with the decisions relevant to a task, "
                            "within a token budget.")
    def decisions_for_task(task: str, budget: str = "") -> str:
        if budget and not budget.strip().isdigit():
            raise ValueError(f"budget must be a number of tokens, not {budget!r}")
        try:
            text, _, _ = service.prime(task, int(budget) if budget else None)
        except Refused as exc:
            raise ValueError(exc.message) from None
        return text

    for spec in _tool_schemas(app):
        tools[spec[0]] = spec[1]
    return app


def _tool_schemas(app: MCPServer) -> list[tuple[str, set[str]]]:
    import anyio

    listed = anyio.run(app.list_tools)
    return [(tool.name, set(tool.input_schema.get("properties", {}))) for tool in listed]


def serve(ws: Workspace, *, http_port: int | None = None, agent: str | None = None,
          allow_status: bool = False) -> None:
    """Serve until the client goes away (stdio), or until Ctrl-C or SIGTERM."""
    service = DecisionService(ws)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        app = build(service, agent=agent, allow_status=allow_status)
        if http_port is None:
            if sys.stdin.isatty():
                print("squad mcp speaks MCP on stdin and stdout: an MCP client starts it "
                      "(see `squad init --mcp`). Ctrl-D or Ctrl-C to stop.", file=sys.stderr)
            app.run("stdio")
        else:
            _serve_http(app, http_port)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.close()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends the server like Ctrl-C: through every `finally`, exit status 0."""
    raise KeyboardInterrupt


def _serve_http(app: MCPServer, port: int) -> None:
    """Streamable HTTP on loopback only; port 0 picks a free port, reported on stderr."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
        except OSError as exc:
            raise UsageError(f"--http {port}: cannot listen on 127.0.0.1:{port}: "
                             f"{exc.strerror or exc}") from None
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        print(f"serving MCP at {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        config = uvicorn.Config(app.streamable_http_app(host="127.0.0.1"), log_level="warning",
                                lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
