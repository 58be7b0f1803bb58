"""The decision graph: which decisions each decision had as inputs, and what supersedes what.

Edges always point from a newer record to an older one (a record can only name records that
were already in the log), so laying nodes out in columns by depth needs no cycle handling.
`drawn` is the terminal form (`squad show`); `layout` gives geometry for the SVG template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `show` draws from the log view without loading the ledger's models
    from squad.ledger import Ledger

MAX_EDGES = 1500  # past this, input links are left out of the picture (supersedes stay)


@dataclass(frozen=True)
class Edge:
    src: int  # the newer record
    dst: int  # the record it names
    kind: str  # "input", "supersedes", "accept" or "reject"


def edges_of(ledger: Ledger, ids: set[int]) -> list[Edge]:
    """Edges touching `ids`: what they name, and what names them."""
    return [edge for edge in all_edges(ledger) if edge.src in ids or edge.dst in ids]


def all_edges(ledger: Ledger) -> list[Edge]:
    """Every edge of the log, in log order; within a record: inputs, supersedes, target."""
    edges: list[Edge] = []
    for record in ledger.records:
        named = [(i, "input") for i in record.inputs] + [(i, "supersedes")
                                                         for i in record.supersedes]
        if record.target is not None:
            named.append((record.target, record.kind))
        edges += [Edge(record.id, dst, kind) for dst, kind in named]
    return edges


def drawn(record_id: int, groups: list[tuple[str, list[int]]],
          line: Callable[[int], str]) -> str:
    """The record's neighbourhood as indented lines for a terminal (`show`), from its edge
    groups (the log view's) and a line per record."""
    out = [line(record_id)]
    shown = [(label, ids) for label, ids in groups if ids]
    for n, (label, ids) in enumerate(shown):
        last_group = n == len(shown) - 1
        out.append(f"{'└─' if last_group else '├─'} {label}")
        for k, other in enumerate(ids):
            stem = "   " if last_group else "│  "
            out.append(f"{stem}{'└─' if k == len(ids) - 1 else '├─'} {line(other)}")
    if not shown:
        out.append("└─ no inputs, nothing supersedes it or names it")
    return "\n".join(out) + "\n"


def line_of(record_id: int, found: tuple[str, str, str] | None) -> str:
    """One record's line: (title, agent, status), or None when it is not in the log."""
    if found is None:
        return f"{record_id:04d} (not in the log)"
    title, agent, status = found
    return f"{record_id:04d} {title} [{agent}, {status}]"


@dataclass
class Node:
    id: int
    x: float
    y: float
    title: str
    agent: str
    status: str
    here: bool  # one of the decisions the picture is about (others are context)


@dataclass
class Link:
    x1: float
    y1: float
    x2: float
    y2: float
    kind: str
    src: int
    dst: int


@dataclass
class Picture:
    width: int
    height: int
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    left_out: int = 0  # input links not drawn (too many to read)


NODE_W, NODE_H, GAP_X, GAP_Y = 190, 24, 60, 8


def layout(ledger: Ledger, ids: list[int]) -> Picture:
    """Columns by depth (a record sits right of everything it names); rows by id."""
    focus = set(ids)
    edges = [e for e in edges_of(ledger, focus)
             if ledger.get(e.src) is not None and ledger.get(e.dst) is not None]
    left_out = 0
    if len(edges) > MAX_EDGES:
        kept = [e for e in edges if e.kind != "input"]
        left_out = len(edges) - len(kept)
        edges = kept
    members = sorted(focus | {e.src for e in edges} | {e.dst for e in edges})
    depth: dict[int, int] = {}
    named: dict[int, list[int]] = {}
    for e in edges:
        named.setdefault(e.src, []).append(e.dst)
    for record_id in members:  # ids ascend, and edges point to smaller ids
        depth[record_id] = 1 + max((depth[d] for d in named.get(record_id, ()) if d in depth),
                                   default=-1)
    columns: dict[int, list[int]] = {}
    for record_id in members:
        columns.setdefault(depth[record_id], []).append(record_id)
    statuses = ledger.statuses()
    picture = Picture(width=max(1, len(columns)) * (NODE_W + GAP_X),
                      height=max((len(c) for c in columns.values()), default=0)
                      * (NODE_H + GAP_Y) + GAP_Y, left_out=left_out)
    where: dict[int, tuple[float, float]] = {}
    for column, members_here in sorted(columns.items()):
        for row, record_id in enumerate(members_here):
            record = ledger.get(record_id)
            assert record is not None
            x, y = 4 + column * (NODE_W + GAP_X), GAP_Y + row * (NODE_H + GAP_Y)
            where[record_id] = (x, y)
            picture.nodes.append(Node(
                record_id, x, y, record.record.title, record.record.agent,
                statuses.get(record_id, record.record.kind), record_id in focus))
    for e in edges:
        (sx, sy), (dx, dy) = where[e.src], where[e.dst]
        picture.links.append(Link(sx, sy + NODE_H / 2, dx + NODE_W, dy + NODE_H / 2,
                                  e.kind, e.src, e.dst))
    return picture
