"""Compact JSON schemas for tools/list: the same validation in fewer tokens.

Dropped: ``title`` everywhere (pydantic repeats the field name) and ``default: null`` (what an
omitted optional argument means anyway); output schemas keep only the structural keywords
(types, properties, items, references, enums), since agents read descriptions on the inputs.
``anyOf: [{type: T, ...}, {type: null}]`` becomes ``{type: [T, null], ...}``, which accepts
exactly the same values because every other keyword of the branch only constrains values of type T.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compact_schema"]

_OUTPUT_KEEP = {"type", "properties", "items", "$ref", "$defs", "enum", "anyOf", "additionalProperties", "required"}


def _nullable_merge(options: list[Any]) -> dict[str, Any] | None:
    if len(options) != 2 or {"type": "null"} not in options:
        return None
    other = options[0] if options[1] == {"type": "null"} else options[1]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or "anyOf" in other or "$ref" in other:
        return None
    return {**other, "type": [other["type"], "null"]}


def compact_schema(schema: Any, *, output: bool = False, _in_properties: bool = False) -> Any:
    if isinstance(schema, list):
        return [compact_schema(s, output=output) for s in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if not _in_properties and (
            key == "title" or (key == "default" and value is None) or (output and key not in _OUTPUT_KEEP)
        ):
            continue
        # Under "properties" and "$defs" the keys are names, not keywords.
        result[key] = compact_schema(value, output=output, _in_properties=key in ("properties", "$defs"))
    if not _in_properties and isinstance(result.get("anyOf"), list):
        merged = _nullable_merge(result["anyOf"])
        if merged is not None:
            rest = {k: v for k, v in result.items() if k != "anyOf"}
            result = {**merged, **rest}
    return result
