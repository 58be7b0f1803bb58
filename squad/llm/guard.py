"""What squad keeps of a model's reply: bounded, valid Unicode, and without credentials.

A reply is untrusted input that ends up in the run log, the cassette (both committed), the
terminal and the next request. So at the edge, before anything records or uses it:
- lone UTF-16 surrogates (valid JSON escapes, invalid Unicode) become U+FFFD, since UTF-8
  cannot encode them and every writer downstream would fail;
- tool-call arguments over `MAX_ARGUMENT_CHARS` are replaced by a short note (the tool then
  refuses the call), text over `MAX_CONTENT_CHARS` is cut, and calls beyond
  `MAX_CALLS_KEPT` in one reply are dropped: a 10 MB refused argument costs a line, not 10 MB
  in every later request of the cassette;
- anything credential-shaped is redacted (an endpoint may echo the key).

The same guard runs when a cassette is replayed, so a reply is used in the same form in both.
"""

from __future__ import annotations

from squad import secrets
from squad.llm.messages import ChatReply, ToolCall
from squad.safety import scrub

MAX_ARGUMENT_CHARS = 256 * 1024
MAX_CONTENT_CHARS = 256 * 1024
MAX_CALLS_KEPT = 64
DROPPED = "squad: dropped "  # how a replaced argument string starts


def clean(text: str) -> str:
    return secrets.redact(scrub(text))


def _call(call: ToolCall) -> ToolCall:
    arguments = call.arguments
    if len(arguments) > MAX_ARGUMENT_CHARS:
        arguments = (f"{DROPPED}arguments of {len(arguments)} characters (the limit is "
                     f"{MAX_ARGUMENT_CHARS}); send less")
    return ToolCall(id=clean(call.id)[:200], name=clean(call.name)[:200],
                    arguments=clean(arguments))


def guard_reply(reply: ChatReply) -> ChatReply:
    content = reply.content
    if content is not None:
        if len(content) > MAX_CONTENT_CHARS:
            content = content[:MAX_CONTENT_CHARS] + \
                f"\n[squad: cut {len(content) - MAX_CONTENT_CHARS} characters]"
        content = clean(content)
    calls = tuple(_call(call) for call in reply.tool_calls[:MAX_CALLS_KEPT])
    if content == reply.content and calls == reply.tool_calls:
        return reply
    return reply.model_copy(update={"content": content, "tool_calls": calls})
