"""The timeline picture of a run: one lane per agent, a bar per call, marks for commits.

Only geometry lives here (numbers for an SVG template); the template draws it, so a
repository can restyle the picture without touching code. Many agents make thinner lanes
rather than a taller page than a reader can take in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from squad.runfacts import RunFacts

WIDTH = 1000
LABEL = 130  # room for agent names at the left
AXIS = 22  # room for the time axis at the top


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str


@dataclass
class Lane:
    name: str
    y: float
    h: float
    ok: bool


@dataclass
class Tick:
    x: float
    label: str


@dataclass
class Timeline:
    width: int
    height: int
    lane_height: float
    font: float
    lanes: list[Lane] = field(default_factory=list)
    bars: list[Box] = field(default_factory=list)
    marks: list[Box] = field(default_factory=list)
    rounds: list[Tick] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)


def lane_height(agents: int) -> float:
    if agents <= 20:
        return 22.0
    return max(9.0, min(22.0, 600.0 / agents))


def layout(facts: RunFacts) -> Timeline:
    names = sorted(facts.agents, key=lambda n: (n != "lead", _natural(n)))
    h = lane_height(len(names))
    plot = WIDTH - LABEL - 10
    span = max(facts.span, 1.0)

    def x(at: float) -> float:
        return round(LABEL + at / span * plot, 1)

    line = Timeline(width=WIDTH, height=int(AXIS + h * len(names) + 6), lane_height=h,
                    font=min(12.0, max(7.5, h * 0.62)))
    row = {}
    for i, name in enumerate(names):
        row[name] = AXIS + i * h
        line.lanes.append(Lane(name, AXIS + i * h, h, facts.agents[name].ok))
    for call in facts.calls:
        top = row[call.agent]
        width = max(x(call.end) - x(call.start), 1.5)
        if call.kind == "llm":
            box = Box(x(call.start), top + h * 0.15, width, h * 0.7, "llm", call.detail)
        else:
            box = Box(x(call.start), top + h * 0.3, width, h * 0.4,
                      "tool" if call.ok else "tool refused", call.detail)
        box.w = round(box.w, 1)
        box.y, box.h = round(box.y, 1), round(box.h, 1)
        line.bars.append(box)
    for mark in facts.marks:
        top = row.get(mark.agent or "", AXIS)
        tall = h if mark.agent in row else h * len(names)
        line.marks.append(Box(x(mark.at) - 1, round(top, 1), 2.5, round(tall, 1), mark.kind,
                              mark.text))
    for n, at in enumerate(facts.rounds, start=1):
        line.rounds.append(Tick(x(at), f"round {n}"))
    step = _step(span)
    t = 0.0
    while t <= span + 1e-9:
        line.ticks.append(Tick(x(t), _clock(t)))
        t += step
    return line


def _natural(name: str) -> list[tuple[int, int | str]]:
    """a2 before a10: agents numbered without padding still read in order."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", name) if part]


def _step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if span / step <= 10:
            return float(step)
    return span / 10


def _clock(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s" if whole % 60 else f"{whole // 60}m"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
