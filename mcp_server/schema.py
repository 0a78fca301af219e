"""JSON schemas for tools/list: inputs with the same validation in fewer tokens, outputs in full.

Inputs drop ``title`` (pydantic repeats the field name), empty and false defaults (what an omitted
optional argument or flag means anyway) and string length limits (the server enforces them with a clear
error). A tool's input says ``additionalProperties: false`` (``input_schema``): the server refuses
unknown arguments, and a client that honours the schema need not send them to learn it.
``anyOf: [{type: T, ...}, {type: null}]`` becomes ``{type: [T, null], ...}``, which accepts exactly
the same values because every other keyword of the branch only constrains values of type T.
Outputs keep their nested properties, enums, field descriptions and required fields (``output_schema``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

__all__ = ["compact_schema", "input_schema", "output_schema"]


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
        empty_default = key == "default" and (value in (None, [], {}) or value is False)
        if not _in_properties and (key in _ADVISORY or empty_default):
            continue
        # Under "properties" and "$defs" the keys are names, not keywords.
        result[key] = compact_schema(value, _in_properties=key in ("properties", "$defs"))
    if not _in_properties and isinstance(result.get("anyOf"), list):
        merged = _nullable_merge(result["anyOf"])
        if merged is not None:
            rest = {k: v for k, v in result.items() if k != "anyOf"}
            result = {**merged, **rest}
    return result


def input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema as tools/list shows it: compact, closed to unknown arguments (no empty
    ``properties`` for a tool without arguments: ``additionalProperties: false`` says it)."""
    result = {**compact_schema(schema), "additionalProperties": False}
    if result.get("properties") == {}:
        del result["properties"]
    return result


# What only input needs (defaults, patterns), and the model's own docstring, written for whoever reads the code.
_INPUT_ONLY = {"default", "pattern"}


def _always_present(schema: Any, *, _in_properties: bool = False) -> Any:
    if isinstance(schema, list):
        return [_always_present(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    is_model = "properties" in schema
    result = {
        key: _always_present(value, _in_properties=key in ("properties", "$defs"))
        for key, value in schema.items()
        if _in_properties or not (key in _INPUT_ONLY or (is_model and key == "description"))
    }
    if not _in_properties and isinstance(result.get("properties"), dict) and result["properties"]:
        result["required"] = list(result["properties"])
    return result


@cache
def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The full schema of a tool's answer, nested models, enums and all, as an agent reads it (made once per
    model: generating them all took about 100 ms of every tools/list; callers must not change it).

    Every field of an answer is always sent (the SDK dumps the whole model), so every property is
    required; defaults and patterns, which only matter for input, and a model's docstring are left out.
    """
    return dict(_always_present(compact_schema(model.model_json_schema(mode="serialization"))))
