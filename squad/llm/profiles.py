"""What a backend can be trusted with, declared once instead of special-cased everywhere.

`guided` backends (small local models) are not asked to choose tools: squad drives the
steps itself and asks for each decision as grammar-constrained JSON, so every drop validates.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    schema_style: Literal["openai", "llama-cpp"]  # how a JSON schema is asked for
    guided: bool  # squad drives the steps; the model only writes constrained JSON

    def structured(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """The `response_format` that constrains a reply to `schema` on this backend."""
        if self.schema_style == "llama-cpp":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True,
                                                       "schema": schema}}


PROFILES = {
    "openai": Profile(name="openai", schema_style="openai", guided=False),
    "llama-cpp": Profile(name="llama-cpp", schema_style="llama-cpp", guided=True),
}
