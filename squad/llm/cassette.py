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

from squad.errors import LLMError, SquadError
from squad.llm.backend import Backend
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
                 cassette: Path | None = None) -> None:
        if mode != "replay" and backend is None:
            raise ValueError("live and record modes need a backend")
        self.mode = mode
        self._backend = backend
        self._path = cassette
        self._lock = threading.Lock()
        self._by_key: dict[str, list[dict[str, Any]]] = {}
        self._by_label: dict[Label, dict[str, Any]] = {}
        self.used: set[Label] = set()
        if mode == "replay":
            if cassette is None or not cassette.exists():
                raise SquadError(f"{cassette}: no cassette to replay")
            for number, entry in enumerate(read_cassette(cassette), start=1):
                label = Label(*entry["label"])
                self._by_key.setdefault(entry["key"], []).append(entry)
                if label in self._by_label:
                    raise SquadError(f"{cassette}:{number}: a second entry for {label}")
                self._by_label[label] = entry

    def record_to(self, path: Path) -> None:
        self._path = path

    def complete(self, request: ChatRequest, label: Label) -> ChatReply:
        if self.mode == "replay":
            return self._replay(request, label)
        assert self._backend is not None
        try:
            reply = self._backend.complete(request)
        except LLMError as exc:  # a failure is part of what happened: replay fails alike
            self._record(request, label, {"error": exc.message})
            raise
        self._record(request, label, {"reply": reply.model_dump(mode="json")})
        return reply

    def _record(self, request: ChatRequest, label: Label, outcome: dict[str, Any]) -> None:
        if self.mode != "record" or self._path is None:
            return
        line = json.dumps({"label": [label.agent, label.round, label.call],
                           "key": request.key(), "request": request.to_openai(), **outcome},
                          sort_keys=True, ensure_ascii=False)
        with self._lock, self._path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def _replay(self, request: ChatRequest, label: Label) -> ChatReply:
        recorded = self._by_label.get(label)
        if recorded is None:
            raise Divergence(label, "the recorded run made no such call")
        if recorded["key"] != request.key():
            diff = request_diff(recorded["request"], request.to_openai())
            raise Divergence(label, "the request differs from the recorded one", diff)
        with self._lock:
            self.used.add(label)
        if "error" in recorded:
            raise LLMError(recorded["error"])
        return ChatReply.model_validate(recorded["reply"])

    def unused(self) -> list[Label]:
        return sorted(set(self._by_label) - self.used)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


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


def read_cassette(path: Path) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            if not {"label", "key", "request"} <= set(entry) or \
                    not {"reply", "error"} & set(entry):
                raise ValueError("missing fields")
            expected = ChatRequest.model_validate(_as_request(entry["request"])).key()
        except (ValueError, TypeError) as exc:
            raise SquadError(f"{path}:{number}: not a cassette entry ({exc})") from None
        if expected != entry["key"]:
            raise SquadError(f"{path}:{number}: the key does not match the request (edited?)")
        entries.append(entry)
    return entries


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
