"""squad's fast reading of its own front matter gives exactly what YAML gives, or steps aside."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from squad.records import plain_front_matter

PIECES = ["null", "0", "7", "012", "1e3", "0x1f", "1:20", "-1", "yes", "No", "on", "off", "y",
          "true", "~", "'it''s'", "''", "'a: b'", "Use SQLite", "sha256:abc", "a: b", "a #b",
          "[]", "[a, b]", "[1, 2]", "[a, 'b']", "[yes]", "[a:b]", "[x y]", "{id: 1}", ".inf",
          "2026-01-01", "'2026-01-01T00:00:00Z'", "-x", "x-", "&a", "*a", "!x", "%x", "@x",
          "`x", "|", ">", "a,b", "[a,b]", "[ a ]", "x ", " x", "x  y", "é", "x'y", "N", "Null"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["id", "title", "tags", "run", "a_b", "Key", "x y"]),
                          st.sampled_from(PIECES) | st.text(max_size=12)), max_size=6))
def test_the_fast_reading_agrees_with_yaml(lines: list[tuple[str, str]]) -> None:
    head = "".join(f"{key}: {value}\n" for key, value in lines)
    fast = plain_front_matter(head)
    if fast is None:
        return  # YAML reads it
    assert fast == yaml.safe_load(head)


def test_squads_own_front_matter_takes_the_fast_way() -> None:
    head = ("id: 5\ntitle: 'Decision 5: use option 5'\nagent: architect\n"
            "date: '2026-01-01T00:00:05Z'\nkind: decision\ntarget: null\nstatus: proposed\n"
            "supersedes: [3]\ntags: [bench, area-2]\nrun: null\ninputs: []\n"
            "prev: sha256:4c4c75dbcc58b269007109e3010114d16865b783286f28fb9dfdcec4596ee26f\n")
    assert plain_front_matter(head) == yaml.safe_load(head)
    assert plain_front_matter(head + "was: {id: 2, commit: abc}\n") is None
