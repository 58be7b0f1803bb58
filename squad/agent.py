"""One agent, one task, one fresh context: the tool-calling loop.

The loop owns no policy of its own beyond the turn cap: the context comes from `context`,
the tools from `tools`, every model call goes through the `Backend` seam, and what happened
is returned as values (and reported through `on_event` for live progress).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from squad import context as contexts
from squad import guide
from squad.budget import Stop
from squad.charters import Charter
from squad.connection import Connection
from squad.errors import LLMError
from squad.events import AgentEvent, Done, Failed, Spawned, ToolUsed
from squad.ledger import Ledger
from squad.llm.backend import Backend
from squad.llm.messages import ChatReply, ChatRequest, Message, Price, Usage
from squad.llm.profiles import Profile
from squad.safety import scrub
from squad.tools import ToolBox, ToolResult, specs_for
from squad.workspace import Workspace


@dataclass(frozen=True)
class ToolUse:
    name: str
    arguments: str
    ok: bool
    result: str


@dataclass
class AgentResult:
    agent: str
    model: str
    inputs: tuple[int, ...] = ()
    drops: list[str] = field(default_factory=list)
    tool_uses: list[ToolUse] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    final: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def cost(self, prices: dict[str, Price]) -> float | None:
        price = prices.get(self.model)
        return price.cost(self.usage) if price else None


Emit = Callable[[AgentEvent], None]


def run_agent(ws: Workspace, charter: Charter, task: str, connection: Connection, *,
              ledger: Ledger, run: str | None = None, on_event: Emit | None = None,
              snapshot: str | None = None,
              drop_name: Callable[[], str] | None = None,
              on_drop: Callable[[str], None] | None = None) -> AgentResult:
    """Run `charter` on `task` until it stops calling tools, fails, or hits the turn cap.

    The connection's backend may raise LLMError (an endpoint failure, a budget, an
    interrupt): the agent then ends with that error. Its profile says how to talk to the
    model, and its model, when set, beats the charter's and squad.toml's. `snapshot`,
    `drop_name` and `on_drop` go to the ToolBox.
    """
    backend, profile = connection.backend, connection.profile
    emit: Emit = on_event or (lambda event: None)
    task = scrub(task)  # argv may carry undecodable bytes; a request must be valid UTF-8
    settings = ws.config.llm
    model = connection.model or charter.model or settings.model
    ctx = contexts.build(ws.inputs, charter, task, ledger, ws.config.context.token_budget)
    toolbox = ToolBox(ws, charter, run=run, inputs=ctx.inputs, ledger=ledger,
                      snapshot=snapshot, drop_name=drop_name, on_drop=on_drop)
    tools = tuple(specs_for(charter))
    messages: list[Message] = list(ctx.messages)
    result = AgentResult(agent=charter.name, model=model, inputs=ctx.inputs)
    emit(Spawned(agent=charter.name, model=model, inputs=list(ctx.inputs),
                 omitted=len(ctx.omitted), prompt_tokens_estimate=ctx.tokens))
    if profile.guided:
        return _guided(charter, task, toolbox, backend, messages, model, profile, result, emit)
    for _turn in range(settings.max_turns):
        reply = _complete(backend, ChatRequest(model=model, messages=tuple(messages),
                                               tools=tools, temperature=charter.temperature),
                          result, emit)
        if reply is None:
            return result
        messages.append(reply.as_message())
        if not reply.tool_calls:
            result.final = reply.content
            emit(Done(agent=charter.name, drops=list(result.drops)))
            return result
        cap = charter.max_tool_calls_per_reply or ws.config.agents.max_tool_calls_per_reply
        for number, call in enumerate(reply.tool_calls):
            outcome = _use(toolbox, call.name, call.arguments, result, emit) if number < cap \
                else _refuse(call.name, call.arguments, result, emit,
                             f"error: only {cap} tool calls per reply are run; this one was "
                             "not. Ask again in your next reply if you still need it")
            messages.append(Message(role="tool", tool_call_id=call.id,
                                    content=outcome.content))
    return _fail(result, f"stopped after {settings.max_turns} turns without finishing "
                         "(max_turns)", emit)


def _complete(backend: Backend, request: ChatRequest, result: AgentResult,
              emit: Emit) -> ChatReply | None:
    """One model call, counted; None (and the agent failed) if the backend gave up.

    A refused call (`Stop`) is logged by the run that refused it, as a `stop` event; the
    agent ends with its reason but says nothing more, so the log has one line for it.
    The reply itself is logged by the run's backend (`llm` events), which knows its label.
    """
    try:
        reply = backend.complete(request)
    except Stop as stop:
        result.error = stop.message
        return None
    except LLMError as exc:
        _fail(result, exc.message, emit)
        return None
    result.calls += 1
    result.usage = result.usage + reply.usage
    return reply


def _use(toolbox: ToolBox, name: str, arguments: str, result: AgentResult,
         emit: Emit) -> ToolResult:
    outcome = toolbox.call(name, arguments)
    result.tool_uses.append(ToolUse(name, arguments, outcome.ok, outcome.content))
    if outcome.drop:
        result.drops.append(outcome.drop)
    emit(ToolUsed(agent=result.agent, tool=name, ok=outcome.ok, arguments=arguments,
                  drop=outcome.drop))
    return outcome


def _refuse(name: str, arguments: str, result: AgentResult, emit: Emit,
            message: str) -> ToolResult:
    """A tool call squad does not run (over a cap), answered like a refusal."""
    result.tool_uses.append(ToolUse(name, arguments, False, message))
    emit(ToolUsed(agent=result.agent, tool=name, ok=False, arguments=arguments))
    return ToolResult(False, message)


def _fail(result: AgentResult, error: str, emit: Emit) -> AgentResult:
    result.error = error
    emit(Failed(agent=result.agent, error=error))
    return result


DECISION_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["title", "context", "decision", "consequences"],
    "properties": {
        # Long maxLength bounds make llama.cpp's grammar explode; max_tokens bounds the rest.
        "title": {"type": "string", "minLength": 5, "maxLength": 100},
        "context": {"type": "string", "minLength": 1},
        "decision": {"type": "string", "minLength": 1},
        "consequences": {"type": "string", "minLength": 1}}}
GUIDED_TRIES = 2


def _guided(charter: Charter, task: str, toolbox: ToolBox, backend: Backend,
            messages: list[Message], model: str, profile: Profile, result: AgentResult,
            emit: Emit) -> AgentResult:
    """For a model that cannot be trusted with tools: squad looks around for it, then asks
    for exactly one decision as JSON constrained by the record's schema, and drops it."""
    if "list_files" in charter.tools:
        files = _use(toolbox, "list_files", "{}", result, emit)
        shown, to_read = guide.survey(files.content.split("\n") if files.ok else [], task)
        listing = "\n".join(shown) or "(no files you may read)"
        messages.append(Message(role="user", content=f"Files in the repository:\n{listing}"))
        left = guide.READ_CHARS
        for path in to_read if "read_file" in charter.tools else []:
            if left < 200:
                break
            read = _use(toolbox, "read_file", json.dumps({"path": path}), result, emit)
            if read.ok:
                text = guide.clip(read.content, left)
                left -= len(text)
                messages.append(Message(role="user", content=f"{path}:\n```\n{text}\n```"))
    messages.append(Message(role="user", content=(
        "Write your one most important decision for the task as a JSON object with the keys "
        "title (one short line), context, decision and consequences.")))
    fault = ""
    for _try in range(GUIDED_TRIES):
        reply = _complete(backend, ChatRequest(
            model=model, messages=tuple(messages), max_tokens=700,
            temperature=charter.temperature,
            response_format=profile.structured("decision", DECISION_SCHEMA)), result, emit)
        if reply is None:
            return result
        outcome = _use(toolbox, "record_decision", reply.content or "", result, emit)
        if outcome.drop:
            result.final = outcome.content
            emit(Done(agent=charter.name, drops=list(result.drops)))
            return result
        fault = outcome.content
        messages += [reply.as_message(), Message(role="user", content=(
            f"That decision was refused ({fault}). Answer again with corrected JSON."))]
    return _fail(result, f"no valid decision in {GUIDED_TRIES} tries; last: {fault}", emit)
