"""The one-method seam every LLM call passes through: `complete(request) -> reply`.

The agent loop never knows which backend it holds: the OpenAI-compatible client, or the
seam's labelled wrapper that records a call or serves it back on replay.
"""

from __future__ import annotations

from typing import Protocol

from squad.llm.messages import ChatReply, ChatRequest


class Backend(Protocol):
    def complete(self, request: ChatRequest) -> ChatReply: ...

    def close(self) -> None: ...
