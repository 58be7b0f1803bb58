"""`squad.toml`: team settings, validated by pydantic; a bad file gets a one-line error."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from squad.errors import UsageError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CoordinatorSettings(_Section):
    settle_seconds: float = Field(1.0, ge=0, le=3600)
    max_drop_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)


class Config(_Section):
    coordinator: CoordinatorSettings = CoordinatorSettings()


CONFIG_NAME = "squad.toml"


def load_config(root: Path) -> Config:
    path = root / CONFIG_NAME
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise UsageError(f"{path}: {where}: {err['msg']}") from None
