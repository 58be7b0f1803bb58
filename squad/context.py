"""Replicated context: the prompt for one agent and one task, assembled by code.

Order matters for provider prompt caches: squad's instructions, AGENTS.md and the decision
log come first, then the charter and the task. While the live log fits the budget, every
agent of a round sees the same decisions, so everything before the charter is a prefix they
share. Decision selection is deterministic: superseded and rejected decisions drop out;
the rest are ranked by relevance to the charter (shared tags, paths in its read scope), then
accepted before proposed, then newest first, and taken while they fit the token budget.
Whatever is left out is said in the prompt. Same inputs, same bytes.
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


# The section heading and the worst-case "left out" note are paid before any decision.
_FIXED_TOKENS = 90


def select(ledger: Ledger, charter: Charter, budget: int,
           status: dict[int, str] | None = None) -> tuple[list[Record], list[int]]:
    """The live decisions to show (in id order) and the ids left out, within `budget` tokens."""
    status = ledger.statuses() if status is None else status
    live = [r for r in ledger.records if r.kind == "decision" and status.get(r.id) in LIVE]
    ranked = sorted(live, key=lambda r: (-_relevance(r, charter),
                                         status[r.id] != "accepted", -r.id))
    chosen, left, spent = [], [], _FIXED_TOKENS
    for record in ranked:
        cost = _cost(record)
        if spent + cost <= budget:
            chosen.append(record)
            spent += cost
        else:
            left.append(record.id)
    return sorted(chosen, key=lambda r: r.id), sorted(left)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(f"{i:04d}" for i in ids[:20])
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


def build(root: Path, charter: Charter, task: str, ledger: Ledger, budget: int) -> Context:
    agents_md_path = root / "AGENTS.md"
    agents_md = agents_md_path.read_text(encoding="utf-8").strip() \
        if agents_md_path.is_file() else "(This repository has no AGENTS.md.)"
    status = ledger.statuses()
    chosen, left = select(ledger, charter, budget, status)
    shown = [{"id": r.id, "title": r.title, "status": status[r.id], "agent": r.agent,
              "date": format_instant(r.date), "tags": r.tags,
              "supersedes": [f"{i:04d}" for i in r.supersedes],
              "context": r.context, "decision": r.decision, "consequences": r.consequences}
             for r in chosen]
    system = templating.render("prompts/system.md.j2", root, agents_md=agents_md,
                               decisions=shown, omitted=len(left), omitted_ids=_ids(left))
    user = templating.render("prompts/task.md.j2", root, charter=charter, task=task.strip())
    return Context(messages=(Message(role="system", content=system),
                             Message(role="user", content=user)),
                   inputs=tuple(r.id for r in chosen), omitted=tuple(left),
                   decision_tokens=_FIXED_TOKENS + sum(_cost(r) for r in chosen))
