"""JSON-schema keywords llguidance (1.9.1) refuses as "Unimplemented keys", rewritten into what it
can enforce or dropped, so a schema pydantic writes for ordinary types is never a 400:

- `uniqueItems` (pydantic's `set[...]`, `frozenset[...]`) is dropped: "no item twice" is not a
  property of a prefix a token mask can hold without tracking every item so far. The answer may
  repeat an item; pydantic reads a list with repeats into a set without complaint.
- `propertyNames` naming a fixed set of strings (pydantic's `dict[SomeEnum, V]`: `{"$ref"}` to an
  enum) becomes those names as optional `properties` of schema V, and nothing else: the same
  instances, in a form llguidance enforces. Any other `propertyNames` (a pattern, a length) is
  dropped: the keys are then free strings.
"""

from __future__ import annotations

from engine.finite_schema import DATA_KEYWORDS, Unresolved, resolve


def relaxed(schema, root=None):
    """A copy of `schema` without the keywords above; `root` resolves local `$ref`s (default: itself)."""
    root = schema if root is None else root
    if isinstance(schema, list):
        return [relaxed(item, root) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in DATA_KEYWORDS else relaxed(v, root)) for k, v in schema.items()}
    out.pop("uniqueItems", None)
    names = _fixed_names(out.pop("propertyNames", None), root)
    if names is not None and "properties" not in out and "patternProperties" not in out:
        value = out.get("additionalProperties", True)
        out["properties"] = {name: ({} if value is True else value) for name in names}
        out["additionalProperties"] = False
    return out


def _fixed_names(names, root) -> list[str] | None:
    """The strings a `propertyNames` schema allows when it is an enum or const (through one `$ref`)."""
    if isinstance(names, dict) and isinstance(names.get("$ref"), str):
        try:
            names = resolve(root, names["$ref"])
        except Unresolved:
            return None
    if not isinstance(names, dict):
        return None
    allowed = names.get("enum", [names["const"]] if "const" in names else None)
    if isinstance(allowed, list) and allowed and all(isinstance(n, str) for n in allowed):
        return allowed
    return None
