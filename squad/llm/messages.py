"""The values that cross the LLM seam: a request, a reply, and token usage.

`ChatRequest.canonical()` is the documented form that replay keys hash: JSON with sorted keys,
no whitespace, UTF-8, holding only what the model sees (model, messages, tools, sampling
parameters) and nothing volatile (no ids of requests, no headers, no key). Changing it changes
every recorded key.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Value):
    id: str
    name: str
    arguments: str  # raw JSON text, exactly as the model wrote it


class Message(_Value):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class ChatRequest(_Value):
    model: str
    messages: tuple[Message, ...]
    tools: tuple[dict[str, Any], ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: dict[str, Any] | None = None

    def to_openai(self) -> dict[str, Any]:
        """Keyword arguments for `chat.completions.create`, without the unset ones."""
        out: dict[str, Any] = {"model": self.model,
                               "messages": [m.to_openai() for m in self.messages]}
        if self.tools:
            out["tools"] = list(self.tools)
        for name in ("temperature", "max_tokens", "response_format"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def canonical(self) -> str:
        return json.dumps(self.to_openai(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)

    _key: str | None = PrivateAttr(default=None)

    def key(self) -> str:
        """Hashed once: the run log and the cassette both ask for it."""
        if self._key is None:
            self._key = "sha256:" + hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()
        return self._key


class Usage(_Value):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens + other.prompt_tokens,
                     completion_tokens=self.completion_tokens + other.completion_tokens,
                     cached_tokens=self.cached_tokens + other.cached_tokens)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Price(_Value):
    """US dollars per million tokens."""

    prompt: float = Field(0.0, ge=0)
    completion: float = Field(0.0, ge=0)
    cached: float | None = Field(None, ge=0)

    def cost(self, usage: Usage) -> float:
        cached_rate = self.prompt if self.cached is None else self.cached
        fresh = usage.prompt_tokens - usage.cached_tokens
        return (fresh * self.prompt + usage.cached_tokens * cached_rate
                + usage.completion_tokens * self.completion) / 1_000_000


class ChatReply(_Value):
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    model: str = ""
    usage: Usage = Usage()

    def as_message(self) -> Message:
        return Message(role="assistant", content=self.content, tool_calls=self.tool_calls)
