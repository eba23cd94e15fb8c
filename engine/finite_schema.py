"""Whether a JSON schema has any instance at all once `$ref` recursion is taken into account.

llguidance (1.9.1) refuses a schema that is unsatisfiable on its face (`minimum` above
`maximum`, a required property that is `false`, ...), but not one whose only way out is
endless: `{"properties": {"next": {"$ref": "#"}}, "required": ["next"]}` compiles and
validates, and then either forces bytes forever ("Too many items ... ff_tokens" on the first
mask: a failed generation) or lets the model write until its token budget runs out. Neither
its validation nor its matcher tells such a grammar from a good one before decoding.

So this module finds the schema's productive `$ref` targets as a least fixpoint, with
llguidance as the judge of each step: a target counts as having a finite instance once its own
schema, with every `$ref` to a target not (yet) known to have one replaced by `false`, still
validates. What llguidance calls satisfiable under that assumption really has an instance
(`false` only removes instances); and a finite instance only ever passes through targets that
have one, so the fixpoint finds every productive target. The root must end up productive.

Only schemas whose `$ref`s form a cycle are analysed (no cycle: llguidance's own validation
already decides), and the work is bounded (below; one validation takes about 0.1 ms for a
small schema); past the bounds, or on a `$ref` this module does not resolve itself (remote,
`$id`-relative, anchors), the schema is let through as before.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

ROOT = "#"
# Where the untouched original goes inside each candidate document, so every original pointer
# still resolves (relocated under it) while the candidate itself stands at the root.
ORIGINAL = "phi4mm-original"
CONTAINERS = ("$defs", "definitions")  # hold schemas that apply only when a `$ref` names them
DATA_KEYWORDS = ("const", "enum", "default", "examples")  # JSON values, not schemas: no `$ref` inside
# Bounds on the work for one schema (it runs before admission, once per distinct grammar): past
# them the schema goes through unjudged, as it did before this check existed
MAX_TARGETS = 256  # distinct `$ref` targets
MAX_CHECKS = 200  # validations
MAX_CHARS = 2_000_000  # JSON text validated, all checks together


class Unresolved(Exception):
    """A `$ref` this module does not follow, or a check over budget: no verdict."""


def endless_problem(schema) -> str:
    """Empty when `schema` has a finite instance (or no verdict is possible); otherwise what is wrong."""
    try:
        targets = ref_graph(schema)
        if not has_cycle(targets):
            return ""
        productive = least_fixpoint(schema, targets)
    except Unresolved:
        return ""
    if ROOT in productive:
        return ""
    stuck = sorted(t for t in targets if t not in productive)  # ref_graph holds only what the root reaches
    names = " or ".join(f"`{t}`" for t in stuck[:3])
    return (
        f"it has no finite instance: {names} cannot be completed without nesting "
        f"{'itself' if len(stuck) == 1 else 'one of them'} again through `$ref` (a required property or item "
        "that refers back, with no way to stop), so an answer could never end."
    )


# -- the graph of `$ref` targets ------------------------------------------------------------------


def walk_refs(node):
    """Every `$ref` string in `node`'s own schema: not inside `$defs`/`definitions` (those apply
    only when named) nor inside JSON values such as `const` or `enum`."""
    if isinstance(node, list):
        for item in node:
            yield from walk_refs(item)
    elif isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for key, value in node.items():
            if key not in CONTAINERS and key not in DATA_KEYWORDS:
                yield from walk_refs(value)


def resolve(schema, pointer: str):
    """A local JSON pointer (`#`, `#/$defs/a`) -> the subschema it names."""
    if pointer != ROOT and not pointer.startswith("#/"):
        raise Unresolved(pointer)
    node = schema
    for raw in pointer[2:].split("/") if pointer != ROOT else ():
        key = unquote(raw).replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(key)] if isinstance(node, list) else node[key]
        except (KeyError, IndexError, ValueError, TypeError):
            raise Unresolved(pointer) from None
    if isinstance(node, dict) and any(k in node for k in ("$id", "$anchor", "$dynamicRef", "$recursiveRef")):
        raise Unresolved(pointer)  # a new base URI or dynamic scope: pointers would not mean the same
    return node


def ref_graph(schema) -> dict[str, set[str]]:
    """Each target reachable from the root (the root included) -> the targets its schema names."""
    graph, todo = {}, [ROOT]
    while todo:
        pointer = todo.pop()
        if pointer not in graph:
            if len(graph) >= MAX_TARGETS:
                raise Unresolved("too many targets")
            graph[pointer] = set(walk_refs(resolve(schema, pointer)))
            todo.extend(graph[pointer])
    return graph


def has_cycle(graph: dict[str, set[str]]) -> bool:
    state = {}

    def visit(node) -> bool:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open" or (nxt not in state and visit(nxt)):
                return True
        state[node] = "done"
        return False

    return any(visit(node) for node in graph if node not in state)


# -- the fixpoint ---------------------------------------------------------------------------------


def least_fixpoint(schema, graph: dict[str, set[str]]) -> set[str]:
    """The targets that have a finite instance. A target is checked again only when one it names
    has just been found productive (a worklist), so the validations stay near the graph's size."""
    users = {t: {s for s, named in graph.items() if t in named} for t in graph}
    original = relocated(schema)
    productive, todo, checks, chars = set(), list(graph), 0, 0
    while todo:
        target = todo.pop()
        if target in productive:
            continue
        text = json.dumps(candidate(resolve(schema, target), productive, original))
        checks, chars = checks + 1, chars + len(text)
        if checks > MAX_CHECKS or chars > MAX_CHARS:
            raise Unresolved("too much work")
        if satisfiable(text):
            productive.add(target)
            todo.extend(users[target] - productive)
    return productive


def relocate(pointer: str) -> str:
    return f"#/$defs/{ORIGINAL}" + pointer[1:]


def relocated(node):
    """A copy of the whole original with every `$ref` pointing into its new place."""
    if isinstance(node, list):
        return [relocated(item) for item in node]
    if not isinstance(node, dict):
        return node
    copy = {k: (v if k in DATA_KEYWORDS else relocated(v)) for k, v in node.items()}
    if isinstance(node.get("$ref"), str):
        copy["$ref"] = relocate(node["$ref"])
    return copy


def assume(node, productive: set[str]):
    """`node`'s own schema with each `$ref` to a target not known productive as `false`; the others
    point into the relocated original, where they keep their full meaning."""
    if isinstance(node, list):
        return [assume(item, productive) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref not in productive:
        return False  # `$ref` with siblings is "all of them": false if the target has no instance
    copy = {k: (v if k in DATA_KEYWORDS else assume(v, productive)) for k, v in node.items() if k not in CONTAINERS}
    if isinstance(ref, str):
        copy["$ref"] = relocate(ref)
    return copy


def candidate(node, productive: set[str], original) -> dict | bool:
    schema = assume(node, productive)
    if isinstance(schema, bool):
        return schema
    return {**schema, "$defs": {ORIGINAL: original}}


def satisfiable(schema: str) -> bool:
    """llguidance's verdict on a schema's JSON text; an error of another kind than
    unsatisfiability gives no verdict."""
    if schema in ("true", "false"):
        return schema == "true"
    import llguidance

    matcher = llguidance.LLMatcher
    try:
        problem = matcher.validate_grammar(matcher.grammar_from_json_schema(schema))
    except (ValueError, TypeError) as err:
        problem = str(err)
    if problem and "nsatisfiable" not in problem:
        raise Unresolved(problem)
    return not problem
