"""REST for non-MCP clients, generated from the same registry as the MCP tools.

``POST /v1/tools/{name}`` takes the tool's arguments as a JSON object and answers with its
structured output; errors are ``{"error": {"code", "message", "hint"}}`` with a fitting status.
Mutations may carry an ``Idempotency-Key``: a retry with the same key and body gets the
first answer instead of running again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.errors import AgentHostError, Conflict, InvalidInput, NotFound

from .auth import principal_of
from .registry import REGISTRY, ToolDef, invalid_arguments, run_tool

if TYPE_CHECKING:
    from .app import AppState

__all__ = ["openapi_document", "rest_routes", "tool_listing"]


def _error(exc: AgentHostError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)


def _visible(read_only: bool) -> list[ToolDef]:
    return [td for td in REGISTRY.values() if td.read_only or not read_only]


def tool_listing(read_only: bool) -> list[dict[str, Any]]:
    return [
        {
            "name": td.name,
            "title": td.title,
            "description": td.description,
            "annotations": {"readOnly": td.read_only, "destructive": td.destructive, "idempotent": td.idempotent},
            "admin_only": td.admin_only,
            "input_schema": td.args_model.model_json_schema(),
            "output_schema": td.output_model.model_json_schema(),
        }
        for td in _visible(read_only)
    ]


def openapi_document(read_only: bool) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/health": {"get": {"summary": "liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
        "/v1/tools": {"get": {"summary": "the tools with their schemas", "responses": {"200": {"description": "ok"}}}},
    }
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for td in _visible(read_only):
        paths[f"/v1/tools/{td.name}"] = {
            "post": {
                "operationId": td.name,
                "summary": td.title or td.name,
                "description": td.description,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": td.args_model.model_json_schema()}},
                },
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {"application/json": {"schema": td.output_model.model_json_schema()}},
                    },
                    "default": error,
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "agenthost", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "hint": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
        "security": [{"bearer": []}],
    }


def rest_routes(get_state: Callable[[], AppState]) -> list[Route]:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(get_state().platform.settings.read_only))

    async def list_tools(request: Request) -> Response:
        return JSONResponse({"tools": tool_listing(get_state().platform.settings.read_only)})

    async def call_tool(request: Request) -> Response:
        state = get_state()
        try:
            principal = principal_of(request.scope)
            td = REGISTRY.get(request.path_params["name"])
            if td is None or (state.platform.settings.read_only and not td.read_only):
                raise NotFound(f"no tool named {request.path_params['name']!r}", "GET /v1/tools lists them")
            raw = await request.body()
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"body is not JSON: {exc}", "send the tool's arguments as a JSON object") from exc
            if not isinstance(body, dict):
                raise InvalidInput("body must be a JSON object of the tool's arguments")
            try:
                args = td.args_model.model_validate(body)
            except ValidationError as exc:
                raise invalid_arguments(td.name, exc) from exc
            arguments = {name: getattr(args, name) for name in td.args_model.model_fields}
            idem_key = request.headers.get("idempotency-key")
            repo = state.platform.store.scoped(principal.tenant_id).idempotency
            digest = hashlib.sha256(td.name.encode() + b"\0" + raw).hexdigest()
            if idem_key and not td.read_only:
                earlier = await repo.find(idem_key)
                if earlier is not None:
                    action, request_hash, status, saved = earlier
                    if (action, request_hash) != (td.name, digest):
                        raise Conflict("this Idempotency-Key was used for a different request", "use a new key")
                    return Response(
                        saved, status_code=status, media_type="application/json", headers={"idempotent-replay": "true"}
                    )
            result = await run_tool(td, state.call_for(principal), arguments)
        except AgentHostError as exc:
            return _error(exc)
        payload = result.model_dump_json()
        if idem_key and not td.read_only:
            await repo.save(idem_key, td.name, digest, 200, payload)
        return Response(payload, media_type="application/json")

    return [
        Route("/v1/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/tools", list_tools, methods=["GET"]),
        Route("/v1/tools/{name}", call_tool, methods=["POST"]),
    ]
