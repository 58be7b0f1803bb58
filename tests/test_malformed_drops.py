"""Fuzz the coordinator with malformed drops mixed with valid ones.

Why: the inbox is written by LLM agents, scripts and people. Whatever lands there, every bad
drop must end up in `decisions/quarantine/` exactly once with a reason, every good one must be
committed exactly once, the inbox must drain, nothing outside the inbox may be touched, and the
coordinator must keep going (no crash, no traceback, no stuck drop). Hypothesis draws rounds of
drops; each round is delivered through the Maildir door (`inbox/tmp` -> `inbox/new`) and
straight into `inbox/`, then run through the in-process coordinator, `squad ingest` or a
running `squad watch`, and the whole repository is audited after every round.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from helpers import START, drop_text, git, squad, start
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from squad.clock import fixed_clock
from squad.coordinator import Coordinator, trailer_name
from squad.dropbox import Inbox, unique_name
from squad.errors import RecordError
from squad.records import RECORD_NAME, Draft, digest, parse_draft, parse_record
from squad.safety import BIDI_CONTROLS
from squad.scaffold import init
from squad.verify import verify
from squad.workspace import Workspace

LIMIT = 2048  # max_drop_bytes in the fuzzed repositories (the smallest squad.toml allows is 1024)
MIN_MALFORMED = 1000  # the in-process fuzz must feed at least this many bad drops
FIELDS = {"title", "agent", "kind", "target", "status", "supersedes", "tags", "run", "inputs",
          "context", "decision", "consequences", "id", "date", "prev"}
# Rich console markup in titles, keys and names: `squad watch` logs them (see the watch tests).
BRACKETS = "Checks [/b] and [bold] survive"
SETTINGS: dict[str, Any] = {
    "deadline": None,
    # Every example is a real repository; shrinking one would take minutes, so failures are
    # reported as drawn (the assertion messages list every drop of the round).
    "phases": (Phase.explicit, Phase.reuse, Phase.generate),
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.large_base_example, HealthCheck.filter_too_much],
    "print_blob": True,
}


# ---- content -------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class Bad:
    """A malformed drop: a content category, its bytes and a word its reason should contain."""

    kind: str
    payload: bytes = b""
    expect: str | None = None

    def __repr__(self) -> str:  # short: Hypothesis prints whole rounds of these
        return f"Bad({self.kind}, {len(self.payload)} bytes)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True, repr=False)
class Good:
    """The drawn parts of a valid drop; the marker and references are filled in at delivery."""

    title: str
    agent: str
    body: str
    tags: tuple[str, ...]
    run: str | None
    accepted: bool
    ref: int | None
    ref_kind: str
    crlf: bool
    pad: bool
    sections: bool

    def __repr__(self) -> str:
        return f"Good({self.title!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def front(meta: dict[str, Any]) -> str:
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=10**9)


def text_of(meta: dict[str, Any], sections: tuple[tuple[str, str], ...] | None = None,
            fm: str | None = None) -> str:
    """A drop from front matter (a mapping, or raw YAML text) and `## Section` bodies."""
    if sections is None:
        sections = (("Context", "c"), ("Decision", "d"), ("Consequences", "q"))
    body = "".join(f"\n## {name}\n\n{text}\n" for name, text in sections)
    return f"---\n{front(meta) if fm is None else fm}---\n{body}"


BASE = {"title": "A perfectly fine title", "agent": "fuzzer"}
BAD_YAML = [
    "title: [unclosed\nagent: a\n", "title: 'open quote\nagent: a\n", "title: x\n  agent: y\n",
    "\ttitle: tab indented\n", "title: x\nagent: *undefined_alias\n",
    "title: !!python/object/apply:os.system ['true']\nagent: a\n", "{title: x, agent\n",
    "title: x\n- a list item\n", "title: @reserved\n", "title: `backtick`\n",
    "? [a, b]\n: unhashable key\n", "title: x\nagent: y\n...\nz: 1\n", "title: bell \x07\n",
    "%YAML 9.9\ntitle: x\n", "title: x\ntitle: y: z\n", "agent: a\ntitle: \"bad \\q escape\"\n",
]
NOT_MAPPING = ["", "- a\n- b\n", "just a sentence\n", "42\n", "null\n", "~\n", "'title: x'\n",
               "[title, agent]\n", "!!binary aGVsbG8=\n"]
EXTRA_KEYS = ["[/i]", "[bold red]x", "Title", "AGENT", "tag", "superseded_by", "Squad-Drop",
              "title ", "décision", "status_", "author"]
ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,15}", fullmatch=True)
scalar = st.one_of(st.integers(), st.booleans(), st.none(), st.text(max_size=5),
                   st.floats(allow_nan=False), st.dates())
not_a_string = st.one_of(st.lists(st.text(max_size=5), max_size=3), st.integers(),
                         st.booleans(), st.none(), st.floats(allow_nan=False),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                         st.dates(), st.sampled_from(["", "   ", "a\nb", "be\x07ll", "x" * 201,
                                                      "line\u2028sep"]))
not_id_list = st.one_of(st.lists(st.text(max_size=3), min_size=1, max_size=3), st.text(),
                        st.integers(), st.none(), st.dictionaries(ident, st.integers()),
                        st.lists(st.integers(max_value=0), min_size=1, max_size=3),
                        st.lists(st.booleans(), min_size=1, max_size=3),
                        st.lists(st.floats(allow_nan=False), min_size=1, max_size=3))
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "title": not_a_string,
    "agent": not_a_string,
    "tags": st.one_of(st.integers(), st.text(max_size=5), st.none(),
                      st.lists(st.sampled_from(["-bad", "has space", "", "x" * 41, "ü", ".dot"]),
                               min_size=1, max_size=3),
                      st.lists(st.integers(), min_size=1, max_size=3)),
    "supersedes": not_id_list,
    "inputs": not_id_list,
    "kind": st.one_of(st.sampled_from(["Decision", "ACCEPT", "maybe", ""]), st.integers(),
                      st.none()),
    "status": st.one_of(st.sampled_from(["done", "Accepted", "rejected", ""]), st.integers()),
    "run": st.one_of(st.sampled_from(["has space", "-lead", "", "x" * 65, "ü"]), st.integers()),
    "target": st.integers(1, 10**6),  # a target on a plain decision
}
# Titles may hold no invisible formatting (Cf), bodies no bidirectional controls.
safe_chars = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
                           exclude_characters="«»")


@st.composite
def bad_content(draw: st.DrawFn) -> Bad:
    """One malformed drop; every category is malformed by construction, not by luck."""
    kind = draw(st.sampled_from([
        "bad-yaml", "not-mapping", "random-front-matter", "random-body", "missing-field",
        "missing-decision", "empty-decision", "wrong-type", "escaped", "assigned", "extra-key",
        "body-in-front-matter", "dangling", "binary", "nul", "empty", "whitespace", "huge",
        "latin-1", "utf-16", "truncated-utf-8", "invalid-utf-8", "bom", "no-front-matter",
        "cr-only", "unclosed", "duplicate-section", "preamble", "control-chars",
        "symlink-inside", "symlink-outside", "symlink-relative", "symlink-dangling",
        "symlink-dir", "directory", "fifo",
    ]))
    good = text_of(BASE)
    if kind == "bad-yaml":
        return Bad(kind, text_of({}, fm=draw(st.sampled_from(BAD_YAML))).encode(), "yaml")
    if kind == "not-mapping":
        return Bad(kind, text_of({}, fm=draw(st.sampled_from(NOT_MAPPING))).encode(), "mapping")
    if kind == "random-front-matter":  # never names a title, so never valid
        fm = draw(st.text(max_size=120).filter(
            lambda s: "itle" not in s.lower() and "\\" not in s))
        return Bad(kind, f"---\n{fm}\n---\n\n## Decision\n\nd\n".encode())
    if kind == "random-body":  # no '## ' heading at all, so no Decision section
        body = draw(st.text(max_size=200).filter(lambda s: "##" not in s))
        return Bad(kind, f"---\n{front(BASE)}---\n{body}".encode())
    if kind == "missing-field":
        missing = draw(st.sampled_from(["title", "agent"]))
        meta = {k: v for k, v in BASE.items() if k != missing}
        return Bad(f"missing-{missing}", text_of(meta).encode(), missing)
    if kind == "missing-decision":
        return Bad(kind, text_of(BASE, (("Context", "c"), ("Consequences", "q"))).encode(),
                   "decision")
    if kind == "empty-decision":
        blank = draw(st.sampled_from(["", "   ", "\n\n", "\t"]))
        return Bad(kind, text_of(BASE, (("Context", "c"), ("Decision", blank))).encode(),
                   "decision")
    if kind == "wrong-type":
        name = draw(st.sampled_from(sorted(WRONG)))
        return Bad(f"wrong-{name}", text_of({**BASE, name: draw(WRONG[name])}).encode(), name)
    if kind == "escaped":  # written by hand: PyYAML's safe_dump folds a NEL into a space
        field_name = draw(st.sampled_from(["title", "agent"]))
        escape = draw(st.sampled_from(["n\\Nel", "a\\nb", "be\\all", "l\\Ls", "p\\Ps",
                                       "nu\\0l", "e\\esc", "d\\x7fel"]))
        other = "agent" if field_name == "title" else "title"
        fm = f'{field_name}: "{escape}"\n{other}: fine\n'
        return Bad(kind, text_of({}, fm=fm).encode(), field_name)
    if kind == "assigned":
        keys = draw(st.lists(st.sampled_from(["id", "date", "prev"]), min_size=1, unique=True))
        values = {"id": 7, "date": date(2026, 1, 1), "prev": "sha256:" + "0" * 64}
        meta = {**BASE, **{k: values[k] for k in keys}}
        return Bad(kind, text_of(meta).encode(), "coordinator assigns")
    if kind == "extra-key":
        key = draw(st.one_of(st.sampled_from(EXTRA_KEYS), ident.filter(lambda k: k not in FIELDS)))
        return Bad(kind, text_of({**BASE, key: draw(scalar)}).encode(), "extra")
    if kind == "body-in-front-matter":
        key = draw(st.sampled_from(["context", "decision", "consequences"]))
        return Bad(kind, text_of({**BASE, key: "x"}).encode(), "body section")
    if kind == "dangling":  # ids far beyond anything a fuzzed log ever reaches
        ref = draw(st.integers(10**6, 10**30))
        meta = draw(st.sampled_from([{"supersedes": [ref]}, {"inputs": [ref]},
                                     {"kind": "accept", "target": ref},
                                     {"kind": "reject", "target": ref}]))
        return Bad(kind, text_of({**BASE, **meta}).encode(), "not in the log")
    if kind == "binary":
        data = draw(st.binary(max_size=1500))
        at = draw(st.integers(0, len(data)))
        return Bad(kind, data[:at] + b"\x00" + data[at:], "nul")
    if kind == "nul":
        at = draw(st.integers(0, len(good)))
        return Bad(kind, (good[:at] + "\x00" + good[at:]).encode(), "nul")
    if kind == "empty":
        return Bad(kind, b"", "empty")
    if kind == "whitespace":
        return Bad(kind, draw(st.text(" \t\n\r\x0b\x0c", min_size=1, max_size=200)).encode(),
                   "empty")
    if kind == "huge":
        size = draw(st.integers(LIMIT + 1, 3 * LIMIT))
        data = text_of(BASE).encode()
        return Bad(kind, data + b"x" * (size - len(data)) + b"\n", "limit")
    if kind == "latin-1":
        text = text_of({**BASE, "title": "Entscheidung über Café " + draw(ident)})
        return Bad(kind, text.encode(draw(st.sampled_from(["latin-1", "cp1252"]))), "utf-8")
    if kind == "utf-16":
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"]))
        return Bad(kind, good.encode(codec), "nul")
    if kind == "truncated-utf-8":
        data = (good + "€").encode()
        return Bad(kind, data[: -draw(st.integers(1, 2))], "utf-8")
    if kind == "invalid-utf-8":
        junk = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xfe"]))
        data = good.encode()
        at = draw(st.integers(0, len(data)))
        return Bad(kind, data[:at] + junk + data[at:], "utf-8")
    if kind == "bom":
        return Bad(kind, b"\xef\xbb\xbf" + good.encode(), "front matter")
    if kind == "no-front-matter":
        text = draw(st.sampled_from(["\n" + good, good.replace("---\n", "", 1),
                                     "## Decision\n\nd\n", "----\n" + good[4:]]))
        return Bad(kind, text.encode(), "front matter")
    if kind == "cr-only":
        return Bad(kind, good.replace("\n", "\r").encode(), "front matter")
    if kind == "unclosed":
        return Bad(kind, f"---\n{front(BASE)}\n## Decision\n\nd\n".encode(), "not closed")
    if kind == "duplicate-section":
        twice = draw(st.sampled_from(["Context", "Decision", "Consequences"]))
        sections = (("Context", "c"), ("Decision", "d"), ("Consequences", "q"), (twice, "again"))
        return Bad(kind, text_of(BASE, sections).encode(), "twice")
    if kind == "preamble":
        return Bad(kind, f"---\n{front(BASE)}---\nhello\n\n## Decision\n\nd\n".encode(),
                   "text before")
    if kind == "control-chars":
        char = draw(st.sampled_from(["\x07", "\x1b", "\x0c", "\x7f", "\x01"]))
        sections = (("Context", f"ring {char} ring"), ("Decision", "d"))
        return Bad(kind, text_of(BASE, sections).encode(), "control")
    if kind.startswith("symlink"):
        return Bad(kind, b"", "symlink")
    return Bad(kind, b"", "not a regular file")  # directory, fifo


@st.composite
def good_content(draw: st.DrawFn) -> Good:
    """A valid drop: odd but legal titles, bodies, tags, references and line endings."""
    return Good(
        title=draw(st.one_of(st.text(safe_chars, max_size=40), st.just(BRACKETS))),
        agent=draw(st.sampled_from(["fuzzer", "Zoë", "agent with spaces", "[/i]", "qa-bot"])),
        body=draw(st.text(st.characters(exclude_categories=("Cs",),
                                        exclude_characters="«»\r" + "".join(BIDI_CONTROLS),
                                        codec="utf-8").filter(
            lambda c: c == "\n" or not (c < " " or c == "\x7f")), max_size=120)
                  .filter(lambda s: "##" not in s)),
        tags=tuple(draw(st.lists(st.from_regex(r"[a-z0-9][a-z0-9._/-]{0,10}", fullmatch=True),
                                 max_size=3))),
        run=draw(st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
                                                    fullmatch=True))),
        accepted=draw(st.booleans()),
        ref=draw(st.one_of(st.none(), st.integers(0, 10**6))),
        ref_kind=draw(st.sampled_from(["inputs", "supersedes", "accept", "reject"])),
        crlf=draw(st.booleans()),
        pad=draw(st.integers(0, 5)) == 0,
        sections=draw(st.booleans()),
    )


# ---- names ---------------------------------------------------------------------------------

POOL = [b"clash", b"clash.reason", b"README.md", b"0001-looks-like-a-record.md", b"-", b"--help",
        b"x" * 250, "é".encode() * 125, b"a b", b"100%.md", b"[b]oops[red]", b"*?.md"]
# The pool is drawn often so that names meet again: in inbox/ and new/ in one round, and in
# quarantine/ across rounds.
NAME_KINDS = ["plain", "maildir", "spaces", "unicode", "dashes", "long", "not-utf-8", "newline",
              "pool", "pool", "pool"]


@st.composite
def name_spec(draw: st.DrawFn) -> tuple[str, Any]:
    """An odd file name, drawn as (kind, detail) and made concrete per round by make_name."""
    kind = draw(st.sampled_from(NAME_KINDS))
    if kind == "spaces":
        return kind, draw(st.sampled_from(["drop {} with spaces.md", " {} leading",
                                           "{} trailing "]))
    if kind == "unicode":
        chars = st.characters(exclude_categories=("Cs",), exclude_characters="/\x00")
        return kind, draw(st.text(chars, min_size=1, max_size=40))
    if kind == "dashes":
        return kind, draw(st.sampled_from(["-{}", "--{}", "-{}.md", "--rf {}"]))
    if kind == "long":
        return kind, (draw(st.sampled_from(["x", "ü", "界"])),
                      draw(st.sampled_from([200, 201, 240, 250, 255])))
    if kind == "not-utf-8":
        return kind, draw(st.sampled_from([b"\xff\xfe", b"\x80abc", b"caf\xe9.md", b"\xc3\x28"]))
    if kind == "newline":
        return kind, draw(st.sampled_from(["{}\nsecond line.md", "{}\r\n", "{}\ttab",
                                           "{}\x1b[31mred"]))
    if kind == "pool":
        return kind, draw(st.sampled_from(POOL))
    return kind, None


def make_name(spec: tuple[str, Any], tag: str) -> bytes:
    """The file name for a drawn spec; `tag` makes all but the pool names unique."""
    kind, extra = spec
    if kind == "maildir":
        return unique_name().encode()
    if kind in ("spaces", "dashes", "newline"):
        return extra.format(tag).encode()
    if kind == "unicode":
        return f"{tag}-{extra}".encode()
    if kind == "long":
        fill, size = extra
        name = f"{tag}-".encode()
        while len(name) + len(fill.encode()) <= size:
            name += fill.encode()
        return name + b"y" * (size - len(name))
    if kind == "not-utf-8":
        return tag.encode() + b"-" + extra
    if kind == "pool":
        return extra
    return f"drop-{tag}.md".encode()


@dataclass(frozen=True, repr=False)
class Spec:
    """One drawn drop: what it holds, what it is called and which door it comes in by."""

    content: Bad | Good
    name: tuple[str, Any]
    place: str  # "new": through inbox/tmp into inbox/new; "root": straight into inbox/

    def __repr__(self) -> str:
        return f"{self.content!r} as {self.name[0]} in {self.place}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def rounds(count: int, bad: int) -> st.SearchStrategy[list[tuple[list[Spec], list[Spec]]]]:
    """`count` rounds, each at least `bad` malformed drops plus a few valid ones."""
    one = st.tuples(st.lists(st.builds(Spec, bad_content(), name_spec(),
                                       st.sampled_from(["new", "root"])),
                             min_size=bad, max_size=bad + 8),
                    st.lists(st.builds(Spec, good_content(), name_spec(),
                                       st.sampled_from(["new", "root"])),
                             min_size=2, max_size=6))
    return st.lists(one, min_size=count, max_size=count)


# ---- one fuzzed repository -----------------------------------------------------------------

Fingerprint = tuple[Any, ...]


def fingerprint(path: bytes) -> Fingerprint:
    """What a drop is, whatever kind of file it is (a FIFO is never opened)."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISDIR(info.st_mode):
        return ("dir", tuple(sorted((n, fingerprint(os.path.join(path, n)))
                                    for n in os.listdir(path))))
    if stat.S_ISFIFO(info.st_mode):
        return ("fifo",)
    with open(path, "rb") as handle:
        return ("file", handle.read())


CLAIMED = re.compile(r"\d+\.P\d+Q\d+R[0-9a-f]{8}\..+\.md")  # a fresh Maildir name


def same_drop(label: str, name: bytes, renamed: bool) -> bool:
    """Whether a trailer or reason label names the drop delivered as `name`.

    A loose file whose name is already waiting in new/ is claimed under a new name: its first
    120 bytes (as UTF-8, whatever does not decode dropped), a dot and a fresh Maildir name. The
    first pass matches names as delivered; the second (`renamed`) only names built that way.
    """
    if not renamed:
        return label == trailer_name(os.fsdecode(name))
    stem = trailer_name(name[:120].decode("utf-8", "ignore") + ".")
    return label.startswith(stem) and CLAIMED.fullmatch(label[len(stem):]) is not None


@dataclass
class Delivered:
    """A drop as it was put into the inbox, with what the audit expects of it."""

    kind: str
    name: bytes
    place: str
    shape: Fingerprint
    expect: str | None = None
    draft: Draft | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} via {self.place}"


@dataclass
class Totals:
    """What a whole Hypothesis run fed in, so the test can prove it fed enough."""

    malformed: int = 0
    valid: int = 0
    kinds: Counter[str] = field(default_factory=Counter)


class Fuzzed:
    """A fresh repository with squad set up, fed round after round and audited after each."""

    def __init__(self, base: Path, runner: str) -> None:
        self.base = base
        self.runner = runner
        self.root = base / "repo"
        self.root.mkdir(parents=True)
        git(self.root, "init", "-q", "-b", "main")
        (self.root / "app.py").write_text("print('hello')\n")
        (self.root / "squad.toml").write_text(
            f"[coordinator]\nsettle_seconds = 0\nmax_drop_bytes = {LIMIT}\n")
        git(self.root, "add", "app.py", "squad.toml")
        git(self.root, "commit", "-q", "-m", "initial")
        self.ws = Workspace.open(self.root, clock=fixed_clock(START, timedelta(minutes=1)))
        init(self.ws, with_agents=False)
        self.inbox = self.ws.inbox
        self.coordinator = Coordinator(self.ws)
        self.stage = base / "stage"
        self.stage.mkdir()
        self.targets = {"inside": self.root / "inside-target.md",
                        "outside": base / "outside-target.md", "dir": base / "outside-dir"}
        self.targets["inside"].write_text(drop_text("Inside the repo, behind a symlink"))
        self.targets["outside"].write_text(drop_text("Outside the repo, behind a symlink"))
        self.targets["dir"].mkdir()
        (self.targets["dir"] / "inner.md").write_text(drop_text("In a linked folder"))
        self.untouched = self.snapshot()
        self.delivered: list[Delivered] = []
        self.decisions: list[int] = []  # ids of committed plain decisions
        self.watch: subprocess.Popen[str] | None = None
        self.watch_err = base / "watch.err"
        self.watch_log: IO[str] | None = None
        self.serial = 0

    def close(self) -> None:
        if self.watch is not None and self.watch.poll() is None:
            self.watch.kill()
            self.watch.wait()
        if self.watch_log is not None:
            self.watch_log.close()
        self.ws.repo.close()

    def snapshot(self) -> dict[str, Fingerprint]:
        return {key: (fingerprint(os.fsencode(path)), os.lstat(path).st_mtime_ns)
                for key, path in self.targets.items()}

    # ---- delivery ------------------------------------------------------------------------

    def deliver(self, round_no: int, bad: list[Spec], good: list[Spec]) -> list[Delivered]:
        """Put one round into the inbox: Maildir drops first, then the loose files."""
        taken: set[tuple[str, bytes]] = set()
        items: list[tuple[Spec, bytes]] = []
        for index, spec in enumerate([*bad, *good]):
            name = make_name(spec.name, f"{round_no}.{index}")
            if (spec.place, name) in taken:
                name = f"drop-{round_no}.{index}.md".encode()
            taken.add((spec.place, name))
            items.append((spec, name))
        # A valid drop whose name sorts after every other: proof the pass went on to the end.
        last = Spec(Good(BRACKETS, "closer", "last", (), None, False, None, "inputs", False,
                         False, True), ("pool", None), "new")
        items.append((last, f"\U0010fffd-last-{round_no}.md".encode()))
        items.sort(key=lambda pair: pair[0].place != "new")
        return [self.put(spec, name) for spec, name in items]

    def put(self, spec: Spec, name: bytes) -> Delivered:
        content = spec.content
        if isinstance(content, Good):
            self.serial += 1
            payload, draft = self.valid_payload(content, f"v{self.serial}.{len(self.delivered)}")
            item = Delivered("valid", name, spec.place, ("file", payload), draft=draft)
        else:
            payload = content.payload
            item = Delivered(content.kind, name, spec.place, ("file", payload), content.expect)
        inbox = os.fsencode(self.inbox.path)
        final = os.path.join(inbox, b"new" if spec.place == "new" else b"", name)
        if isinstance(content, Good) and spec.place == "new" and self.utf8(name):
            Inbox(self.inbox.path).drop(payload.decode(), name=name.decode())
        else:
            # Maildir drops are built in tmp/; loose files are written in place, except under
            # `squad watch`, which could take a half-written file (settle_seconds is 0).
            atomic = spec.place == "new" or self.runner == "watch"
            staging = os.path.join(inbox, b"tmp", name) if spec.place == "new" else \
                os.path.join(os.fsencode(self.stage), name)
            where = staging if atomic else final
            item.shape = self.make(content.kind if isinstance(content, Bad) else "valid",
                                   where, payload)
            if atomic:
                os.rename(where, final)
        self.delivered.append(item)
        return item

    @staticmethod
    def utf8(name: bytes) -> bool:
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def make(self, kind: str, path: bytes, payload: bytes) -> Fingerprint:
        links = {"symlink-inside": os.fsencode(self.targets["inside"]),
                 "symlink-outside": os.fsencode(self.targets["outside"]),
                 "symlink-relative": b"../../../inside-target.md",
                 "symlink-dangling": os.fsencode(self.base / "no-such-file.md"),
                 "symlink-dir": os.fsencode(self.targets["dir"])}
        if kind in links:
            os.symlink(links[kind], path)
        elif kind == "directory":
            os.mkdir(path)
            with open(os.path.join(path, b"inner.md"), "wb") as handle:
                handle.write(drop_text("A drop inside a directory").encode())
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            with open(path, "xb") as handle:
                handle.write(payload)
        return fingerprint(path)

    def valid_payload(self, good: Good, marker: str) -> tuple[bytes, Draft]:
        meta: dict[str, Any] = {"title": f"{good.title} «{marker}»", "agent": good.agent}
        if good.tags:
            meta["tags"] = list(good.tags)
        if good.run:
            meta["run"] = good.run
            # a record may only name a run that is recorded (verify checks it)
            log = self.ws.root / ".squad" / "runs" / good.run / "events.jsonl"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.touch()
        if good.accepted:
            meta["status"] = "accepted"
        if good.ref is not None and self.decisions:
            target = self.decisions[good.ref % len(self.decisions)]
            if good.ref_kind in ("accept", "reject"):
                meta.update(kind=good.ref_kind, target=target)
            else:
                meta[good.ref_kind] = [target]
        decision = f"{good.body}\nDecided «{marker}»."
        sections = (("Context", "why"), ("Consequences", "then"), ("Decision", decision)) \
            if good.sections else (("Decision", decision),)
        text = text_of(meta, sections)
        if good.crlf:
            text = text.replace("\n", "\r\n")
        data = text.encode()
        if good.pad and len(data) < LIMIT:  # exactly at the limit is still fine
            data = data[:-1] + b"x" * (LIMIT - len(data)) + data[-1:]
        try:
            draft = parse_draft(data.decode())
        except RecordError as exc:  # pragma: no cover - a generator bug or a parser bug
            raise AssertionError(f"a drop meant to be valid was refused: {exc.message}\n"
                                 f"{data!r}") from None
        return data, draft

    # ---- running -------------------------------------------------------------------------

    def run(self, items: list[Delivered]) -> None:
        bad = sum(item.kind != "valid" for item in items)
        good = len(items) - bad
        listing = "\n".join(map(str, items))
        if self.runner == "inproc":
            report = self.coordinator.ingest()
            assert (len(report.committed), len(report.quarantined)) == (good, bad), listing
        elif self.runner == "cli":
            result = squad(self.root, "ingest", "--json", check=False)
            assert "Traceback" not in result.stderr, result.stderr
            assert result.returncode == (1 if bad else 0), result.stderr
            out = json.loads(result.stdout)
            assert (len(out["committed"]), len(out["quarantined"])) == (good, bad), listing
        else:
            self.wait_until_drained(listing)

    def start_watch(self) -> None:
        self.watch_log = self.watch_err.open("w")
        self.watch = start(self.root, "watch", text=True, stdout=subprocess.DEVNULL,
                           stderr=self.watch_log)

    def wait_until_drained(self, listing: str) -> None:
        assert self.watch is not None
        deadline = time.monotonic() + 30
        while self.inbox_left():
            if self.watch.poll() is not None:
                raise AssertionError(f"squad watch died (exit {self.watch.returncode}) with "
                                     f"{self.inbox_left()} left in the inbox:\n"
                                     f"{self.watch_err.read_text()}\nround:\n{listing}")
            assert time.monotonic() < deadline, f"inbox never drained: {self.inbox_left()}"
            time.sleep(0.05)

    def stop_watch(self) -> None:
        assert self.watch is not None
        self.watch.send_signal(signal.SIGTERM)
        code = self.watch.wait(timeout=20)
        errors = self.watch_err.read_text()
        assert "Traceback" not in errors, errors
        assert code == 0, errors

    def inbox_left(self) -> list[str]:
        left = [f"inbox/{n}" for n in os.listdir(self.inbox.path) if n not in ("new", "tmp")]
        for sub in ("new", "tmp"):
            folder = self.inbox.path / sub
            left += [f"{sub}/{n}" for n in os.listdir(folder)] if folder.is_dir() else []
        return left

    # ---- auditing ------------------------------------------------------------------------

    def audit(self) -> None:
        listing = "\n".join(map(str, self.delivered))
        assert self.inbox_left() == [], listing
        self.audit_quarantine(listing)
        self.audit_log(listing)
        assert verify(self.ws) == []
        assert self.snapshot() == self.untouched, "a symlink's target was touched"

    def audit_quarantine(self, listing: str) -> None:
        bad = [item for item in self.delivered if item.kind != "valid"]
        folder = os.fsencode(self.ws.quarantine)
        files = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        pairs = []  # (drop file, its reason text)
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.endswith(b".reason") and name[:-7] in files \
                    and stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as handle:
                    pairs.append((name[:-7], handle.read().decode("utf-8", "replace")))
        found: dict[int, tuple[bytes, str]] = {}
        used: set[bytes] = set()
        for renamed in (False, True):  # exact names first, then names claim_loose extended
            for index, item in enumerate(bad):
                if index in found:
                    continue
                for drop, reason in pairs:
                    label = reason.split(": ", 1)[0]
                    if drop in used or not same_drop(label, item.name, renamed):
                        continue
                    if fingerprint(os.path.join(folder, drop)) == item.shape:
                        found[index] = (drop, reason)
                        used.add(drop)
                        break
        for index, item in enumerate(bad):
            assert index in found, f"not in quarantine (or changed there): {item}\n" \
                f"quarantine: {sorted(files)}\nround:\n{listing}"
            reason = found[index][1]
            why = reason.split(": ", 1)[1].strip() if ": " in reason else ""
            assert why, f"empty reason for {item}: {reason!r}"
            if item.expect:
                assert item.expect in why.lower(), f"{item}: reason {why!r}"
        assert len(files) == 2 * len(bad), \
            f"quarantine holds {len(files)} files for {len(bad)} drops: {sorted(files)}"

    def audit_log(self, listing: str) -> None:
        good = [item for item in self.delivered if item.kind == "valid"]
        folder = self.ws.decisions
        records = [parse_record(path.read_text()) for path in sorted(folder.glob("[0-9]*/*.md"))
                   if RECORD_NAME.match(path.name)]
        assert sorted(r.id for r in records) == list(range(1, len(records) + 1))
        titles = Counter(r.title for r in records)
        by_title = {r.title: r for r in records}
        for item in good:
            assert item.draft is not None
            assert titles[item.draft.title] == 1, f"committed {titles[item.draft.title]}x: " \
                f"{item}\nround:\n{listing}"
            record = by_title[item.draft.title]
            assert Draft.model_validate(record.model_dump(include=set(Draft.model_fields))) \
                == item.draft, f"{item} was committed as something else"
        assert len(records) == len(good), f"records nobody dropped: {sorted(titles)}"
        self.decisions = sorted(r.id for r in records if r.kind == "decision")
        out = git(self.root, "log", "--format=%x1e%(trailers:key=Squad-Drop,valueonly,separator=)"
                                    "%x00%(trailers:key=Squad-Drop-Hash,valueonly,separator=)")
        drops = [tuple(chunk.strip("\n").split("\0")) for chunk in out.split("\x1e")
                 if chunk.strip("\n\0")]
        # The same name may come back with new content in a later round; (name, hash) may not.
        assert len(drops) == len(set(drops)) == len(good), Counter(drops).most_common(3)
        left = list(drops)
        matched: set[int] = set()
        for renamed in (False, True):
            for index, item in enumerate(good):
                hashed = digest(item.shape[1])
                hit = next((d for d in left if d[1] == hashed
                            and same_drop(d[0], item.name, renamed)), None)
                if index not in matched and hit is not None:
                    matched.add(index)
                    left.remove(hit)
        missing = [str(item) for index, item in enumerate(good) if index not in matched]
        assert not missing, f"no Squad-Drop trailers for {missing}: {drops}"

    def finish(self) -> None:
        result = squad(self.root, "verify", check=False)
        count = sum(item.kind == "valid" for item in self.delivered)
        assert (result.returncode, result.stdout.strip()) == \
            (0, f"ok: {count} record{'' if count == 1 else 's'} verified"), result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture
def fuzz_dirs(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """Fresh folders for the examples of one test (Hypothesis runs them in one test call)."""
    count = iter(range(10**6))
    yield lambda: tmp_path / f"example-{next(count)}"


def fuzz(base: Path, runner: str, plan: list[tuple[list[Spec], list[Spec]]],
         totals: Totals) -> None:
    """Feed `plan` to a fresh repository round by round through `runner`; audit each round."""
    repo = Fuzzed(base, runner)
    try:
        if runner == "watch":
            repo.start_watch()
        for round_no, (bad, good) in enumerate(plan):
            if runner == "inproc" and round_no == 2:
                repo.coordinator = Coordinator(repo.ws)  # a restart between rounds
            items = repo.deliver(round_no, bad, good)
            repo.run(items)
            repo.audit()
            totals.malformed += sum(item.kind != "valid" for item in items)
            totals.valid += sum(item.kind == "valid" for item in items)
            totals.kinds.update(item.kind for item in items)
        if runner == "watch":
            repo.stop_watch()
        repo.finish()
    finally:
        repo.close()


# ---- the tests -----------------------------------------------------------------------------

def test_in_process_coordinator_quarantines_every_malformed_drop_once(
        fuzz_dirs: Callable[[], Path]) -> None:
    """At least 1,000 malformed drops, three rounds per repository, in-process passes."""
    totals = Totals()

    @settings(max_examples=14, **SETTINGS)
    @given(plan=rounds(3, 25))
    def run(plan: list[tuple[list[Spec], list[Spec]]]) -> None:
        fuzz(fuzz_dirs(), "inproc", plan, totals)

    run()
    assert totals.malformed >= MIN_MALFORMED, totals
    assert len(totals.kinds) >= 30, totals.kinds  # every category got drawn at least once


def test_squad_ingest_process_quarantines_every_malformed_drop_once(
        fuzz_dirs: Callable[[], Path]) -> None:
    """The same audit with the real `squad ingest` process (exit codes, JSON, no traceback)."""
    totals = Totals()

    @settings(max_examples=3, **SETTINGS)
    @given(plan=rounds(2, 25))
    def run(plan: list[tuple[list[Spec], list[Spec]]]) -> None:
        fuzz(fuzz_dirs(), "cli", plan, totals)

    run()
    assert totals.malformed >= 150, totals


def test_squad_watch_survives_malformed_drops(fuzz_dirs: Callable[[], Path]) -> None:
    """A long-running `squad watch` sees the same junk; it must neither die nor log a traceback,
    and it must stop cleanly on SIGTERM."""
    totals = Totals()

    @settings(max_examples=2, **SETTINGS)
    @given(plan=rounds(2, 20))
    def run(plan: list[tuple[list[Spec], list[Spec]]]) -> None:
        fuzz(fuzz_dirs(), "watch", plan, totals)

    run()
    assert totals.malformed >= 80, totals


# ---- pinned cases the fuzz found -----------------------------------------------------------

@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Fuzzed]:
    repo = Fuzzed(tmp_path / "pinned", "inproc")
    yield repo
    repo.close()


def test_a_quarantined_drop_named_like_a_reason_file_is_never_overwritten(fresh: Fuzzed) -> None:
    """`x.reason` quarantined first, then a bad drop `x`: both drops must survive."""
    fresh.inbox.drop("first bad drop", name="clash.reason")
    fresh.coordinator.ingest()
    fresh.inbox.drop("second bad drop", name="clash")
    fresh.coordinator.ingest()
    folder = fresh.ws.quarantine
    contents = sorted(p.read_text() for p in folder.iterdir())
    assert "first bad drop" in contents, sorted(p.name for p in folder.iterdir())
    assert "second bad drop" in contents
    assert len(contents) == 4  # two drops, two reasons


def test_a_long_loose_name_that_collides_with_a_waiting_drop_is_still_taken(
        fresh: Fuzzed) -> None:
    """A 250-byte name in inbox/ that is also waiting in inbox/new must not crash the pass."""
    name = "n" * 250
    fresh.inbox.drop(drop_text("Waiting in new"), name=name)
    (fresh.inbox.path / name).write_text(drop_text("Copied in by hand"))
    report = fresh.coordinator.ingest()
    assert sorted(r.title for r in report.committed) == ["Copied in by hand", "Waiting in new"]
    assert fresh.inbox_left() == []


def test_watch_survives_square_brackets_in_titles_and_reasons(tmp_path: Path) -> None:
    """`[/b]` is fine in a title and in a front-matter key; the watch log must not choke on it."""
    repo = Fuzzed(tmp_path / "brackets", "watch")
    try:
        repo.start_watch()
        repo.inbox.drop(drop_text("Use [/b] to close bold"), name="1-title.md")
        repo.inbox.drop(text_of({**BASE, "[/i]": 1}), name="2-key.md")
        repo.inbox.drop(drop_text("After them"), name="3-after.md")
        repo.wait_until_drained("1-title.md, 2-key.md, 3-after.md")
        repo.stop_watch()
    finally:
        repo.close()
    titles = git(repo.root, "log", "--format=%s", "--grep=^Squad-Decision").splitlines()
    assert titles == ["After them", "Use [/b] to close bold"]
