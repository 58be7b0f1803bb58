"""Talking to models: request/reply values, the one-method seam, and its backends."""

from squad.llm.backend import Backend
from squad.llm.messages import ChatReply, ChatRequest, Message, Price, ToolCall, Usage

__all__ = ["Backend", "ChatReply", "ChatRequest", "Message", "Price", "ToolCall", "Usage"]
