"""A grammar no answer can ever complete is refused when it is compiled (before admission), with
the field that brought it; recursive schemas that can stop are still accepted."""

from __future__ import annotations

import json

import pytest

from core.errors import InvalidRequest
from engine.grammar import GrammarSpec

NODE = {"type": "object", "properties": {"next": {"$ref": "#"}}, "additionalProperties": False}

ENDLESS = {
    "required recursion": {**NODE, "required": ["next"]},
    "a list with no end": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "next": {"$ref": "#"}},
        "required": ["name", "next"],
    },
    "children that must exist": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "minItems": 1}},
                "required": ["kids"],
            }
        },
        "$ref": "#/$defs/node",
    },
    "mutual recursion": {
        "$defs": {
            "a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}, "required": ["b"]},
            "b": {"type": "array", "items": {"$ref": "#/$defs/a"}, "minItems": 1},
        },
        "$ref": "#/$defs/a",
    },
    "a reference to itself": {"$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"},
}

FINITE = {
    "optional recursion": NODE,
    "a tree whose children may be none": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                "required": ["v", "kids"],
            }
        },
        "$ref": "#/$defs/node",
    },
    "an expression with a number as base case": {
        "$defs": {
            "e": {
                "anyOf": [
                    {"type": "number"},
                    {
                        "type": "object",
                        "properties": {"args": {"type": "array", "items": {"$ref": "#/$defs/e"}, "minItems": 2}},
                        "required": ["args"],
                    },
                ]
            }
        },
        "$ref": "#/$defs/e",
    },
    "mutual recursion with a null way out": {
        "$defs": {
            "a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/b"}}, "required": ["b"]},
            "b": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/a"}]},
        },
        "$ref": "#/$defs/a",
    },
    "a const that looks like a reference": {
        "type": "object",
        "properties": {"x": {"const": {"$ref": "#"}}, "next": {"$ref": "#"}},
    },
}


@pytest.mark.parametrize("name", list(ENDLESS))
def test_a_schema_with_no_finite_instance_is_refused(name):
    with pytest.raises(InvalidRequest, match="no finite instance") as err:
        GrammarSpec.json_schema(ENDLESS[name]).compiled()
    assert err.value.param == "response_format"


@pytest.mark.parametrize("name", list(FINITE))
def test_a_recursive_schema_that_can_stop_is_accepted(name):
    GrammarSpec.json_schema(FINITE[name]).compiled()


def test_a_forced_call_with_endless_arguments_names_the_tools():
    # the `%json` piece of a Lark grammar, as app/tool_calls.py forces a call
    schema = {"type": "object", "properties": {"args": ENDLESS["required recursion"]}, "required": ["args"]}
    grammar = GrammarSpec.lark(f'start: "functools" call\ncall: %json {json.dumps(schema)}')
    with pytest.raises(InvalidRequest, match="no finite instance") as err:
        grammar.compiled("tools")
    assert err.value.param == "tools"


def test_one_callable_tool_is_enough():
    """With two tools to choose from, one whose arguments can end keeps the grammar satisfiable."""
    calls = [ENDLESS["required recursion"], {"type": "object", "properties": {"city": {"type": "string"}}}]
    grammar = GrammarSpec.lark(f'start: "functools" call\ncall: %json {json.dumps({"anyOf": calls})}')
    grammar.compiled("tools")
