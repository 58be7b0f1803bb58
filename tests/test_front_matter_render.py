"""squad writes its front matter without YAML's emitter in exactly YAML's bytes (records are
hashed and replayed byte for byte), and reads back what it wrote without YAML's parser."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from squad.records import dump_front_matter, plain_front_matter

WORDS = ["a16", "record_decision", "_x", "1_000", "picks", "option", "A", "it's", "(v2),",
         "x-y", "a/b", "sha256:abc", "yes",
         "No", "null", "y", "1", "07", "a:", "a: b", "#x", "a,", "é", "-x", "[a]", "{b}",
         "x  y", "&a", "*a", "!x", "%x", "@x", "`x", "|", ">", "?", "'q'", '"q"', "~", ".inf",
         "1e3", "0x1f", "2026-01-01", "12:30", "tab\there", "line\nbreak", " ", ""]
TEXT = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join) \
    | st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map("".join) \
    | st.text(max_size=10)
SCALAR = (st.none() | st.integers(-5, 10**12) | TEXT | st.booleans()
          | st.sampled_from(["2026-11-28T00:51:13Z", "20261128-005113-313d33",
                             "20261128-005113-313D33", "2026-11-28", "12345678"]))
VALUE = SCALAR | st.lists(SCALAR, max_size=4) | st.dictionaries(st.sampled_from(["id"]),
                                                                   SCALAR, max_size=1)
KEYS = st.sampled_from(["id", "title", "agent", "date", "run", "tags", "prev", "Key", "x y"])


def safe_dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=float("inf"),
                          default_flow_style=None)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(KEYS, VALUE, max_size=7))
def test_the_front_matter_is_yamls_own_bytes(data: dict[str, Any]) -> None:
    assert dump_front_matter(data) == safe_dump(data)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUE, max_size=7))
def test_what_squad_writes_reads_back_as_yaml_reads_it(data: dict[str, Any]) -> None:
    head = dump_front_matter(data)
    fast = plain_front_matter(head)
    if fast is not None:
        assert fast == yaml.safe_load(head)


HEAD_PIECES = ['"**"', '["**"]', '["a", "b"]', '["a, b"]', '"a\\"b"', '"a\\nb"', '"x\ty"', '"é"',
               '"it\'s"', '""', '[""]', '"#x"', "[record_decision, \"src/**\"]", '"a"b"',
               '"\x01"', '"a', '["a]', 'a"', "plain words", "20261128-005113-313d33"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["reads", "tools", "role"]),
                          st.sampled_from(HEAD_PIECES) | st.text(max_size=8)), max_size=4))
def test_the_fast_reading_of_quoted_items_agrees_with_yaml(lines: list[tuple[str, str]]) -> None:
    head = "".join(f"{key}: {value}\n" for key, value in lines)
    fast = plain_front_matter(head)
    if fast is not None:
        assert fast == yaml.safe_load(head)


def test_a_runs_record_takes_the_fast_way_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"id": 2, "title": "Commit through the store, never the user's area (v2)",
            "agent": "a16", "date": "2026-11-28T00:51:13Z", "kind": "decision", "target": None,
            "status": "proposed", "supersedes": [1], "tags": ["git", "safety"],
            "run": "20261128-005113-313d33", "inputs": [],
            "prev": "sha256:da899713ba7a0f3b88cf331442c2ab028c420c7bf7593708aebbfaffc3fc4a00"}
    expected = safe_dump(data)

    def no_yaml(*args: object, **kwargs: object) -> str:
        raise AssertionError("the YAML emitter was used")

    monkeypatch.setattr(yaml, "safe_dump", no_yaml)
    head = dump_front_matter(data)
    assert head == expected
    assert plain_front_matter(head) == data  # read without YAML (None would mean YAML reads)
