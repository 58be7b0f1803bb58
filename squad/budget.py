"""Budgets and stops, checked in code before every model call of a run.

`check` reserves the call it allows, so parallel agents can never make more calls than the
budget; tokens and cost are known only after a reply, so calls already in flight may take
them past their limit, never a call that starts afterwards. Every refusal is returned to the
run as a `Stop` naming which agent call it refused, so a replay can refuse the same call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from squad.errors import LLMError
from squad.llm.messages import Price, Usage


class BudgetLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    calls: int | None = Field(None, ge=0)
    tokens: int | None = Field(None, ge=0)
    cost: float | None = Field(None, ge=0)
    wall_seconds: float | None = Field(None, gt=0)


class Stop(LLMError):
    """A call refused by a budget or an interrupt; the agent that asked ends cleanly."""


class Budget:
    def __init__(self, limits: BudgetLimits, prices: dict[str, Price],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.prices = prices  # the run's, read at its start commit
        self._monotonic = monotonic
        self._started = monotonic()
        self._lock = threading.Lock()
        self.calls = 0
        self.usage = Usage()
        self.cost = 0.0
        self.stopped: str | None = None

    def interrupt(self, reason: str = "interrupted") -> None:
        with self._lock:
            self.stopped = self.stopped or reason

    def check(self) -> None:
        """Allow one more call or raise Stop saying which limit was reached."""
        with self._lock:
            reason = self.stopped or self._exhausted()
            if reason:
                self.stopped = reason
                raise Stop(reason)
            self.calls += 1

    def _exhausted(self) -> str | None:
        limits = self.limits
        if limits.calls is not None and self.calls >= limits.calls:
            return f"call budget reached ({limits.calls} calls)"
        if limits.tokens is not None and self.usage.total >= limits.tokens:
            return f"token budget reached ({self.usage.total} of {limits.tokens} tokens)"
        if limits.cost is not None and self.cost >= limits.cost:
            return f"cost budget reached (${self.cost:.4f} of ${limits.cost:.2f})"
        if limits.wall_seconds is not None and \
                self._monotonic() - self._started >= limits.wall_seconds:
            return f"time budget reached ({limits.wall_seconds:g} s)"
        return None

    def spend(self, model: str, usage: Usage) -> None:
        with self._lock:
            self.usage = self.usage + usage
            price = self.prices.get(model)
            if price:
                self.cost += price.cost(usage)
