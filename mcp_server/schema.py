"""Smaller JSON schemas for tools/list: the same validation (inputs) or a looser one (outputs) in fewer tokens.

Inputs drop ``title`` (pydantic repeats the field name), empty defaults (what an omitted optional
argument means anyway) and string length limits (the server enforces them with a clear error).
``anyOf: [{type: T, ...}, {type: null}]`` becomes ``{type: [T, null], ...}``, which accepts exactly
the same values because every other keyword of the branch only constrains values of type T.
Outputs are cut to their top-level shape.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compact_schema", "output_outline"]


# Limits the server enforces anyway (with a clear error); listing them costs every agent tokens.
_ADVISORY = {"title", "minLength", "maxLength"}


def _nullable_merge(options: list[Any]) -> dict[str, Any] | None:
    if len(options) != 2 or {"type": "null"} not in options:
        return None
    other = options[0] if options[1] == {"type": "null"} else options[1]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or "anyOf" in other or "$ref" in other:
        return None
    return {**other, "type": [other["type"], "null"]}


def compact_schema(schema: Any, *, _in_properties: bool = False) -> Any:
    if isinstance(schema, list):
        return [compact_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if not _in_properties and (key in _ADVISORY or (key == "default" and value in (None, [], {}))):
            continue
        # Under "properties" and "$defs" the keys are names, not keywords.
        result[key] = compact_schema(value, _in_properties=key in ("properties", "$defs"))
    if not _in_properties and isinstance(result.get("anyOf"), list):
        merged = _nullable_merge(result["anyOf"])
        if merged is not None:
            rest = {k: v for k, v in result.items() if k != "anyOf"}
            result = {**merged, **rest}
    return result


def _json_types(schema: dict[str, Any]) -> list[str]:
    if "$ref" in schema:
        return ["object"]
    if "anyOf" in schema:
        return [t for option in schema["anyOf"] for t in _json_types(option)]
    kind = schema.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    if isinstance(kind, str):
        return [kind]
    return []


def output_outline(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema cut to its top-level shape: each property's JSON type, nothing nested.

    It accepts everything the full schema accepts (it only drops constraints), and it is what an
    agent needs to read the answer; the full models stay the server's contract (REST's openapi.json).
    """
    properties: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        types = list(dict.fromkeys(_json_types(prop)))
        properties[name] = {"type": types[0] if len(types) == 1 else types} if types else {}
    return {"type": "object", "properties": properties}
