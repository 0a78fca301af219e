"""/openapi.json: an OpenAPI 3.1 document generated from the tool registry.

Every model (a tool's arguments, its answer, and the models they nest) is one entry of
``components/schemas``, named by pydantic (``Model-Input`` and ``Model-Output`` where the two
differ), and every ``$ref`` points there. Mutations document the ``Idempotency-Key`` header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import __version__
from .registry import ToolDef

__all__ = ["openapi_document"]

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "hint"],
            "properties": {
                "code": {"type": "string", "description": "stable: docs/errors.md lists every code"},
                "message": {"type": "string"},
                "hint": {"type": "string", "description": "what to do next"},
                "retry_after_s": {"type": "number", "description": "when waiting helps: how long"},
            },
        }
    },
}
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_RETRY_AFTER = {"description": "whole seconds to wait before retrying", "schema": {"type": "integer"}}
_IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the first request with a key runs, a retry of the same request gets its answer"
        " again (header Idempotent-Replay: true), a concurrent one 409 in_progress, another request with the"
        " same key 409 conflict. Keys belong to the API key that sends them."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_Mode = Literal["validation", "serialization"]


def _operation(td: ToolDef, refs: Mapping[tuple[Any, _Mode], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": td.name,
        "summary": td.title or td.name,
        "description": td.description,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": refs[(td.args_model, "validation")]}},
        },
        "responses": {
            "200": {
                "description": "the tool's answer",
                "content": {"application/json": {"schema": refs[(td.output_model, "serialization")]}},
            },
            "429": {
                "description": "rate_limited or busy: retry after Retry-After seconds",
                "headers": {"Retry-After": _RETRY_AFTER},
                **_ERROR,
            },
            "default": {"description": "an error, with the status docs/errors.md gives its code", **_ERROR},
        },
    }
    if not td.read_only:
        operation["parameters"] = [{"$ref": "#/components/parameters/IdempotencyKey"}]
        operation["responses"]["200"]["headers"] = {
            "Idempotent-Replay": {
                "description": "true when this is the stored answer to an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    return operation


def openapi_document(tools: Sequence[ToolDef]) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], _Mode]] = [(td.args_model, "validation") for td in tools]
    wanted += [(td.output_model, "serialization") for td in tools]
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}")
    public: dict[str, Any] = {"security": [], "responses": {"200": {"description": "ok"}}}
    paths: dict[str, Any] = {
        "/v1/health": {"get": {"operationId": "health", "summary": "liveness", **public}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "this document", **public}},
        "/v1/tools": {
            "get": {
                "operationId": "list_tools",
                "summary": "the tools this key may call, with their input and output schemas",
                "responses": {"200": {"description": "ok"}, "default": {"description": "an error", **_ERROR}},
            }
        },
    }
    paths |= {f"/v1/tools/{td.name}": {"post": _operation(td, refs)} for td in tools}
    return {
        "openapi": "3.1.0",
        "info": {"title": "agenthost", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {"IdempotencyKey": _IDEMPOTENCY_KEY},
            "schemas": {**defs.get("$defs", {}), "Error": _ERROR_SCHEMA},
        },
        "security": [{"bearer": []}],
    }
