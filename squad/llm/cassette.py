"""Record and replay LLM calls: the cassette of a run.

Every call of a run is labelled `(agent, round, call)` and stored, in the order replies
arrive, as one JSON line: the label, the key (a hash of the request's canonical form, see
`ChatRequest.canonical`), the request as sent and the reply, or the error that ended the
call. Nothing else: no key, no headers. Replay serves replies by key and label and never
touches the network; a request that was not recorded fails closed with a diff against the
request recorded under the same label, which is how a changed template, charter or
AGENTS.md shows up.
"""

from __future__ import annotations

import difflib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from squad import secrets
from squad.errors import LLMError, SquadError
from squad.llm.backend import Backend
from squad.llm.guard import guard_reply
from squad.llm.messages import ChatReply, ChatRequest

Mode = Literal["live", "record", "replay"]


@dataclass(frozen=True, order=True)
class Label:
    agent: str
    round: int
    call: int

    def __str__(self) -> str:
        return f"{self.agent} (round {self.round}, call {self.call})"


class Divergence(SquadError):
    """The replayed run asked something the recorded run did not."""

    def __init__(self, label: Label, message: str, diff: str = "") -> None:
        super().__init__(f"replay diverged at {label}: {message}")
        self.label = label
        self.diff = diff


class Seam:
    """Where every LLM call of a run passes: live, recorded to a cassette, or replayed."""

    def __init__(self, mode: Mode, backend: Backend | None = None,
                 entries: list[dict[str, Any]] | None = None) -> None:
        """`entries` (from `read_cassette`) are what a replay serves."""
        if mode != "replay" and backend is None:
            raise ValueError("live and record modes need a backend")
        self.mode = mode
        self._backend = backend
        self._path: Path | None = None
        self._lock = threading.Lock()
        self._previous: dict[tuple[str, int], dict[str, Any]] = {}
        self._by_label = {_label(entry["label"]): entry for entry in entries or []}
        self.used: set[Label] = set()
        self._recorded: set[Label] = set()
        self._abandoned: set[Label] = set()

    def record_to(self, path: Path) -> None:
        self._path = path

    def complete(self, request: ChatRequest, label: Label) -> ChatReply:
        if self.mode == "replay":
            return self._replay(request, label)
        assert self._backend is not None
        try:
            reply = self._backend.complete(request)
        except LLMError as exc:  # a failure is part of what happened: replay fails alike
            self._record(request, label, {"error": secrets.redact(exc.message)})
            raise
        except Exception as exc:  # a reply squad could not take in (a bug): on replay, the
            # call fails as an endpoint failure, so the run still replays to the same commits
            detail = " ".join(str(exc).split())[:300]
            self._record(request, label, {"error": secrets.redact(f"{type(exc).__name__}: "
                                                                  f"{detail}")})
            raise
        self._record(request, label, {"reply": reply.model_dump(mode="json")})
        return reply

    def abandon(self, label: Label) -> bool:
        """Give up waiting for the call `label` (Ctrl-C): its reply, should it still come, is
        never recorded, so the run log's `stop` for it is the whole story. False if the
        reply was recorded already (then the caller takes it)."""
        with self._lock:
            if label in self._recorded:
                return False
            self._abandoned.add(label)
            return True

    def _record(self, request: ChatRequest, label: Label, outcome: dict[str, Any]) -> None:
        if self.mode != "record" or self._path is None:
            return
        full = request.to_openai()
        # An agent's calls come one at a time from its own thread, so its delta base is
        # its own; only the file (and the sets) need the lock, not the JSON work.
        line = json.dumps({"label": [label.agent, label.round, label.call],
                           "key": request.key(),
                           "request": _delta(self._previous.get((label.agent, label.round)),
                                             full),
                           **outcome}, sort_keys=True, ensure_ascii=False)
        with self._lock:
            if label in self._abandoned:
                return
            self._previous[(label.agent, label.round)] = full
            with self._path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
            self._recorded.add(label)

    def _replay(self, request: ChatRequest, label: Label) -> ChatReply:
        recorded = self._by_label.get(label)
        if recorded is None:
            raise Divergence(label, "the recorded run made no such call")
        if recorded["key"] != request.key():
            diff = request_diff(recorded["request"], request.to_openai())
            raise Divergence(label, "the request differs from the recorded one", diff)
        with self._lock:
            self.used.add(label)
        if "error" in recorded:  # an old cassette may hold a key: never show it again
            raise LLMError(secrets.redact(str(recorded["error"])))
        return guard_reply(ChatReply.model_validate(recorded["reply"]))

    def unused(self) -> list[Label]:
        return sorted(set(self._by_label) - self.used)


class LabelledBackend:
    """The Backend an agent holds: numbers its calls and sends them through the seam."""

    def __init__(self, seam: Seam, agent: str, round_: int) -> None:
        self._seam, self._agent, self._round = seam, agent, round_
        self.calls = 0

    def next_label(self) -> Label:
        return Label(self._agent, self._round, self.calls + 1)

    def complete(self, request: ChatRequest) -> ChatReply:
        label = self.next_label()
        self.calls += 1
        return self._seam.complete(request, label)

    def close(self) -> None:
        pass


# An agent's requests grow by a few messages per call, so each entry stores only what
# changed since that agent's previous call in the round: `"base": {"messages": n, "same":
# [keys]}` says the first n messages and those keys are as before. That keeps a cassette
# linear, not quadratic, in the number of turns.

def _delta(previous: dict[str, Any] | None, full: dict[str, Any]) -> dict[str, Any]:
    if previous is None:
        return full
    old, new = previous.get("messages", []), full["messages"]
    shared = 0
    while shared < min(len(old), len(new)) and old[shared] == new[shared]:
        shared += 1
    same = sorted(k for k in full if k != "messages" and previous.get(k) == full[k])
    rest = {k: v for k, v in full.items() if k not in same}
    return {**rest, "messages": new[shared:], "base": {"messages": shared, "same": same}}


def _undelta(previous: dict[str, Any] | None, stored: dict[str, Any]) -> dict[str, Any]:
    base = stored.get("base")
    if base is None:
        return stored
    if previous is None:
        raise ValueError("it builds on the same agent's previous call, which is missing")
    full = {k: v for k, v in stored.items() if k != "base"}
    full.update({k: previous[k] for k in base["same"]})
    full["messages"] = previous["messages"][: base["messages"]] + stored["messages"]
    return full


def read_cassette(path: Path) -> list[dict[str, Any]]:
    """The entries of a cassette with whole requests, each checked against its key.

    Any fault (not UTF-8, not JSON, a missing or mistyped field) is a SquadError naming the
    file and the line, never a traceback.
    """
    entries = []
    previous: dict[tuple[str, int], dict[str, Any]] = {}
    seen: set[Label] = set()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SquadError(f"{path}: cannot read: {exc.strerror}") from None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw.decode("utf-8"))
            if not isinstance(entry, dict):
                raise ValueError("not a JSON object")
            if not {"label", "key", "request"} <= set(entry) or \
                    not {"reply", "error"} & set(entry):
                raise ValueError("missing fields")
            label = _label(entry["label"])
            if not isinstance(entry["request"], dict) or not isinstance(entry["key"], str):
                raise ValueError("request must be an object and key a string")
            entry["request"] = _undelta(previous.get((label.agent, label.round)),
                                        entry["request"])
            expected = ChatRequest.model_validate(_as_request(entry["request"])).key()
            if "reply" in entry:
                ChatReply.model_validate(entry["reply"])
            elif not isinstance(entry["error"], str):
                raise ValueError("error must be a string")
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            detail = secrets.redact(" ".join(str(exc).split()))[:200]
            raise SquadError(f"{path}:{number}: not a usable cassette entry ({detail})") \
                from None
        if expected != entry["key"]:
            raise SquadError(f"{path}:{number}: the key does not match the request (edited?)")
        if label in seen:
            raise SquadError(f"{path}:{number}: a second entry for {label}")
        seen.add(label)
        previous[(label.agent, label.round)] = entry["request"]
        entries.append(entry)
    return entries


def _label(value: Any) -> Label:
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])):
        raise ValueError("label must be [agent, round, call]")
    return Label(*value)


def _as_request(data: dict[str, Any]) -> dict[str, Any]:
    messages = []
    for message in data.get("messages", []):
        calls = [{"id": c["id"], "name": c["function"]["name"],
                  "arguments": c["function"]["arguments"]}
                 for c in message.get("tool_calls", [])]
        messages.append({**{k: v for k, v in message.items() if k != "tool_calls"},
                         "tool_calls": calls})
    return {**data, "messages": messages}


def request_diff(recorded: dict[str, Any], new: dict[str, Any]) -> str:
    """A unified diff of two requests, one message part per line so it reads as text."""
    def lines(request: dict[str, Any]) -> list[str]:
        out = []
        for key, value in sorted(request.items()):
            if key == "messages":
                for i, message in enumerate(value):
                    out.append(f"--- message {i} ({message.get('role')}) ---\n")
                    out += [f"{line}\n" for line in
                            (message.get("content") or "").split("\n")]
                    for call in message.get("tool_calls", []):
                        out.append(f"[tool call {call['function']['name']}"
                                   f"({call['function']['arguments']})]\n")
            else:
                out.append(f"{key}: {json.dumps(value, sort_keys=True)}\n")
        return out

    return "".join(difflib.unified_diff(lines(recorded), lines(new), "recorded request",
                                        "replayed request", n=2))
