"""`squad.toml`: team settings, validated by pydantic; a bad file gets a one-line error."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from squad.budget import BudgetLimits
from squad.errors import UsageError, describe
from squad.llm.messages import Price


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CoordinatorSettings(_Section):
    settle_seconds: float = Field(1.0, ge=0, le=3600)
    max_drop_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)


class LLMSettings(_Section):
    base_url: str | None = None
    model: str = "gpt-4o-mini"
    timeout: float = Field(120.0, gt=0, le=3600)
    max_retries: int = Field(3, ge=0, le=20)
    max_turns: int = Field(12, ge=1, le=200)
    profile: Literal["openai", "llama-cpp"] = "openai"  # what the endpoint can be trusted with


class ContextSettings(_Section):
    token_budget: int = Field(6000, ge=200, le=2_000_000)


class RunDefaults(_Section):
    concurrency: int = Field(4, ge=1, le=64)
    max_agents: int = Field(5, ge=1, le=64)
    rounds: int = Field(1, ge=1, le=20)


class RepoSettings(_Section):
    # The branch whose records keep their ids when `squad merge` joins two logs
    # (None: the repository's default branch).
    trunk: str | None = Field(None, min_length=1, max_length=200)


class AgentSettings(_Section):
    """Caps on what one agent may do, whatever its model asks (a charter may set its own)."""

    max_tool_calls_per_reply: int = Field(16, ge=1, le=64)
    max_drops: int = Field(5, ge=1, le=100)  # per agent and round


class SecretSettings(_Section):
    """Files agents never read, beyond the built-in secret-like names (squad.secrets)."""

    names: tuple[str, ...] = ()  # more patterns, matched against each path component
    allow: tuple[str, ...] = ()  # globs on whole paths that are not secrets after all


class Config(_Section):
    repo: RepoSettings = RepoSettings()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    llm: LLMSettings = LLMSettings()
    context: ContextSettings = ContextSettings()
    run: RunDefaults = RunDefaults()
    budget: BudgetLimits = BudgetLimits()
    agents: AgentSettings = AgentSettings()
    secrets: SecretSettings = SecretSettings()
    prices: dict[str, Price] = {}

    def with_env(self, env: Mapping[str, str]) -> Config:
        """Apply SQUAD_* and OPENAI_BASE_URL from the environment (they beat squad.toml)."""
        llm = self.llm.model_dump()
        for key, name in (("base_url", "OPENAI_BASE_URL"), ("base_url", "SQUAD_BASE_URL"),
                          ("model", "SQUAD_MODEL")):
            if env.get(name):
                llm[key] = env[name]
        try:
            return self.model_copy(update={"llm": LLMSettings.model_validate(llm)})
        except ValidationError as exc:
            raise UsageError(f"environment: {describe(exc)}") from None


CONFIG_NAME = "squad.toml"


def load_config(root: Path) -> Config:
    path = root / CONFIG_NAME
    if not os.path.lexists(path):
        return Config()
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file; squad reads its settings from it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(data, str(path))


def parse_config(raw: bytes, where: str) -> Config:
    """squad.toml's bytes as settings; a fault is one line naming `where`."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{where}: not valid TOML: {' '.join(str(exc).split())[:200]}") \
            from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{where}: {describe(exc)}") from None
