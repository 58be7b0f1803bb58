"""Routing: which specialists take part in a run, and what each one's task is.

The lead agent proposes a plan as JSON (grammar-constrained where the backend can); the limits
are code: only agents that exist, none twice, at most `max_agents`, every task non-empty.
An invalid plan is sent back once with the reason; a second invalid plan stops the run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from squad import templating
from squad.charters import Charter
from squad.context import read_agents_md, templates_of
from squad.errors import SquadError
from squad.llm.backend import Backend
from squad.llm.messages import ChatRequest, Message
from squad.llm.profiles import Profile
from squad.records import describe
from squad.snapshot import Snapshot


class Task(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: str
    task: str = Field(min_length=1, max_length=4000)


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tasks: tuple[Task, ...] = Field(min_length=1)


def plan_schema(names: list[str], max_agents: int) -> dict[str, object]:
    return {"type": "object", "additionalProperties": False, "required": ["tasks"],
            "properties": {"tasks": {
                "type": "array", "minItems": 1, "maxItems": max_agents,
                "items": {"type": "object", "additionalProperties": False,
                          "required": ["agent", "task"],
                          "properties": {"agent": {"type": "string", "enum": names},
                                         "task": {"type": "string", "minLength": 1}}}}}}


def check_plan(text: str, names: list[str], max_agents: int) -> Plan:
    """The plan in `text`, or SquadError saying exactly what is wrong with it."""
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", (text or "").strip())
    try:
        plan = Plan.model_validate(json.loads(body))
    except json.JSONDecodeError as exc:
        raise SquadError(f"the plan is not JSON ({exc})") from None
    except ValidationError as exc:
        raise SquadError(f"the plan does not fit the schema: {describe(exc)}") from None
    tasks = [Task(agent=t.agent.strip(), task=t.task.strip()) for t in plan.tasks]
    for task in tasks:
        if task.agent not in names:
            raise SquadError(f"no specialist named {task.agent!r} (choose from "
                             f"{', '.join(names)})")
        if not task.task:
            raise SquadError(f"the task for {task.agent} is empty")
    seen = [t.agent for t in tasks]
    if len(set(seen)) != len(seen):
        raise SquadError("a specialist appears twice; give each one task")
    if len(tasks) > max_agents:
        raise SquadError(f"{len(tasks)} specialists chosen, at most {max_agents} allowed")
    return Plan(tasks=tuple(tasks))


def route(source: Path | Snapshot, goal: str, lead: Charter, team: dict[str, Charter],
          backend: Backend, model: str, max_agents: int, profile: Profile) -> Plan:
    members = [c for name, c in sorted(team.items()) if name != lead.name]
    names = [c.name for c in members]
    if not names:
        raise SquadError("agents/ has no specialist besides the lead")
    agents_md = read_agents_md(source, "(none)")
    prompt = templating.render("prompts/route.md.j2", templates_of(source), goal=goal.strip(),
                               charter=lead,
                               team=members, max_agents=max_agents, agents_md=agents_md)
    messages = [Message(role="user", content=prompt)]
    response_format = profile.structured("plan", plan_schema(names, max_agents))
    problem = ""
    for _attempt in range(2):
        request = ChatRequest(model=model, messages=tuple(messages),
                              temperature=lead.temperature, response_format=response_format)
        reply = backend.complete(request)
        try:
            return check_plan(reply.content or "", names, max_agents)
        except SquadError as exc:
            problem = exc.message
        messages += [reply.as_message(),
                     Message(role="user", content=f"That plan is invalid: {problem}. "
                                                  "Answer again with corrected JSON only.")]
    raise SquadError(f"the lead's plan was invalid twice; last problem: {problem}")
