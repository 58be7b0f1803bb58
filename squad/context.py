"""Replicated context: the prompt for one agent and one task, assembled by code.

Order matters for provider prompt caches: squad's instructions, AGENTS.md and the team's
part of the decision log (the same for every agent of a round) come first; then the charter,
the decisions chosen for it, and the task. Selection is deterministic (see `select`):
superseded and rejected decisions drop out, and decisions are taken while they fit the token
budget. Whatever is left out is said in the prompt. Same inputs, same bytes.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from squad import templating
from squad.charters import Charter
from squad.clock import format_instant
from squad.ledger import Ledger
from squad.llm.messages import Message
from squad.records import Record
from squad.snapshot import Snapshot
from squad.templating import Templates

LIVE = ("accepted", "proposed")
_PATHLIKE = re.compile(r"`([^`\s]+[/.][^`\s]+)`")


def estimate_tokens(text: str) -> int:
    """A deterministic, tokenizer-free estimate: about four characters per token."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class Context:
    messages: tuple[Message, ...]
    inputs: tuple[int, ...]  # ids of the decisions shown: the drops' provenance
    omitted: tuple[int, ...]
    decision_tokens: int

    @property
    def tokens(self) -> int:
        return sum(estimate_tokens(m.content or "") for m in self.messages)


def _relevance(record: Record, charter: Charter) -> int:
    score = len(set(record.tags) & set(charter.tags))
    if charter.reads != ("**",):
        text = " ".join((record.context, record.decision, record.consequences))
        if any(fnmatch.fnmatchcase(path, glob) for path in _PATHLIKE.findall(text)
               for glob in charter.reads):
            score += 1
    return score


def _cost(record: Record) -> int:
    """Tokens of a decision as the task template shows it, plus its heading line."""
    size = len(record.title) + len(record.agent) + len(record.context) + len(record.decision)
    size += len(record.consequences) + sum(len(t) + 2 for t in record.tags)
    return (size + 21 * len(record.supersedes) + 120 + 3) // 4


# The two section headings and the worst-case "left out" note, paid before any decision.
_FIXED_TOKENS = 110


@dataclass(frozen=True)
class Selection:
    team: list[Record]  # the same for every agent: goes before the charter
    own: list[Record]  # chosen for this agent's charter: goes after it
    left: list[int]

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(sorted(r.id for r in self.team + self.own))


# No decision costs less: its heading line alone is 120 characters.
_MIN_COST = (120 + 3) // 4


def _costs(ledger: Ledger) -> dict[int, int]:
    """`_cost` of every record of the log, by object: made once per log, not per agent."""
    return ledger.memo("context-costs", lambda log: {id(r): _cost(r) for r in log.records})


def _take(ranked: list[Record], budget: int, costs: dict[int, int],
          ) -> tuple[list[Record], list[Record], int]:
    """Greedy, in rank order: each decision that still fits is taken. Once the room left is
    below the cheapest possible decision, the rest is left out without pricing each one."""
    chosen: list[Record] = []
    rest: list[Record] = []
    spent = 0
    for at, record in enumerate(ranked):
        if budget - spent < _MIN_COST:
            rest.extend(ranked[at:])
            break
        cost = costs[id(record)]
        if spent + cost <= budget:
            chosen.append(record)
            spent += cost
        else:
            rest.append(record)
    return chosen, rest, spent


def _team(ledger: Ledger, status: dict[int, str], room: int,
          ) -> tuple[list[Record], list[Record], int]:
    """The team part, the same for every agent on one log: made once per round's log."""
    costs = _costs(ledger)
    live = [r for r in ledger.records if r.kind == "decision" and status.get(r.id) in LIVE]
    newest = sorted(live, key=lambda r: (status[r.id] != "accepted", -r.id))
    whole = sum(costs[id(r)] for r in live)
    return _take(newest, room if whole <= room else room // 2, costs)


def select(ledger: Ledger, charter: Charter, budget: int,
           status: dict[int, str] | None = None) -> Selection:
    """The live decisions to show within `budget` tokens, and the ids left out.

    When the whole live log fits, every agent sees all of it as the team part. Otherwise
    half the budget goes to a team part ranked without regard to the agent (accepted first,
    then newest), and the rest to the decisions most relevant to this charter.
    """
    folded = ledger.memo("statuses", Ledger.statuses)
    status = folded if status is None else status
    room = budget - _FIXED_TOKENS
    team, rest, spent = ledger.memo(f"context-team {room}",
                                    lambda log: _team(log, folded, room)) \
        if status is folded else _team(ledger, status, room)
    if charter.tags or charter.reads != ("**",):
        relevant = sorted(rest, key=lambda r: (-_relevance(r, charter),
                                               status[r.id] != "accepted", -r.id))
    else:  # every relevance is 0: the order is the team's, which `rest` is already in
        relevant = rest
    own, left, _ = _take(relevant, room - spent, _costs(ledger))
    by_id = lambda records: sorted(records, key=lambda r: r.id)  # noqa: E731
    return Selection(by_id(team), by_id(own), sorted(r.id for r in left))


def _ids(ids: list[int]) -> str:
    shown = ", ".join(f"{i:04d}" for i in ids[:20])
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


def read_agents_md(source: Path | Snapshot, missing: str) -> str:
    """The repository's AGENTS.md as agents are shown it, or `missing` when there is none;
    from the working tree (a path) or as committed (a snapshot, in a run)."""
    if isinstance(source, Snapshot):
        text = source.agents_md
    else:
        path = source / "AGENTS.md"
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    return text.strip() if text is not None else missing


def templates_of(source: Path | Snapshot) -> Templates:
    return source.templates if isinstance(source, Snapshot) else source


def build(source: Path | Snapshot, charter: Charter, task: str, ledger: Ledger,
          budget: int) -> Context:
    """The prompt for `charter` on `task`; AGENTS.md and template overrides come from
    `source` (a working tree, or a run's snapshot)."""
    agents_md = read_agents_md(source, "(This repository has no AGENTS.md.)")
    root = templates_of(source)
    status = ledger.memo("statuses", Ledger.statuses)
    chosen = select(ledger, charter, budget, status)

    def shown(records: list[Record]) -> list[dict[str, object]]:
        return [{"id": r.id, "title": r.title, "status": status[r.id], "agent": r.agent,
                 "date": format_instant(r.date), "tags": r.tags,
                 "supersedes": [f"{i:04d}" for i in r.supersedes], "context": r.context,
                 "decision": r.decision, "consequences": r.consequences} for r in records]

    system = templating.render("prompts/system.md.j2", root, agents_md=agents_md,
                               decisions=shown(chosen.team))
    user = templating.render("prompts/task.md.j2", root, charter=charter, task=task.strip(),
                             decisions=shown(chosen.own), omitted=len(chosen.left),
                             omitted_ids=_ids(chosen.left))
    return Context(messages=(Message(role="system", content=system),
                             Message(role="user", content=user)),
                   inputs=chosen.ids, omitted=tuple(chosen.left),
                   decision_tokens=_FIXED_TOKENS + sum(map(_cost, chosen.team + chosen.own)))
