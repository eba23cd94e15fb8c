"""app/tool_stream.py: a shaped call's text, cut anywhere, comes out as OpenAI's deltas (the head
with id and name, then argument pieces) whose arguments join into exactly what was written."""

from __future__ import annotations

import json

import pytest

from app.tool_stream import CallStream

ARGS = [{"to": {"city": 'Pa"}ris', "floor": 2}, "tags": ["a", "]"]}, {}]
CALLS = [{"name": n, "arguments": a} for n, a in zip(["ship", "get_time"], ARGS)]
COMPACT = "functools[" + ",".join(json.dumps(c, separators=(",", ":")) for c in CALLS) + "]"  # as llguidance writes
SPACED = "functools[" + ", ".join(json.dumps(c) for c in CALLS) + "]"


@pytest.mark.parametrize("text", [COMPACT, SPACED], ids=["compact", "spaced"])
@pytest.mark.parametrize("size", [1, 2, 5, 17, 1000])
def test_any_cut_gives_the_same_calls(text, size):
    stream, deltas = CallStream(), []
    for at in range(0, len(text), size):
        deltas += stream.feed(text[at : at + size])
    heads = [d for d in deltas if d.id]
    assert [(d.index, d.function.name, d.function.arguments) for d in heads] == [(0, "ship", ""), (1, "get_time", "")]
    assert len({d.id for d in heads}) == 2 and all(d.id.startswith("call_") for d in heads)
    joined = ["".join(d.function.arguments for d in deltas if d.index == i) for i in (0, 1)]
    assert [json.loads(j) for j in joined] == ARGS


def test_text_that_is_no_call_yields_nothing():
    stream = CallStream()
    assert stream.feed("functools") == [] and stream.feed("garbage") == [] and stream.calls == 0
