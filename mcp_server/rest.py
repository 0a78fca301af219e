"""REST for non-MCP clients, generated from the same registry as the MCP tools.

``POST /v1/tools/{name}`` takes the tool's arguments as a JSON object and answers with its
structured output; errors are ``{"error": {"code", "message", "hint"}}`` with a fitting status.

Mutations may carry an ``Idempotency-Key``. Keys belong to the API key that sends them. A
call with one passes the gate first (scope, role, read-only mode, rate limit), exactly as a
fresh call, and only then is the key claimed, atomically: the first request runs, a
concurrent second one gets 409 ``in_progress`` (it does not wait), a retry after success gets
the stored answer, and a retry with another tool or body gets 409 ``conflict``. An answer that
holds a secret (a new API key, revealed values) is never stored: its retry gets 409 saying it
was shown once. A failed run releases the key, so a retry runs again (failures leave nothing
behind). Keys are remembered for ``idempotency_ttl_s``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import anyio
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.errors import AgentHostError, Conflict, InProgress, InvalidInput, NotFound
from orchestrator.store import Earlier

from .auth import principal_of
from .limits import error_response, parse_json_body
from .openapi import openapi_document
from .registry import REGISTRY, Call, ToolDef, admit, check_known, execute, invalid_arguments, refusal, run_tool
from .state import AppState

__all__ = ["ROUTING_ERRORS", "rest_routes", "tool_listing"]


def _visible(read_only: bool) -> list[ToolDef]:
    return [td for td in REGISTRY.values() if td.read_only or not read_only]


def tool_listing(tools: list[ToolDef]) -> list[dict[str, Any]]:
    return [
        {
            "name": td.name,
            "title": td.title,
            "description": td.description,
            "annotations": {
                "readOnly": td.read_only,
                "destructive": td.destructive,
                "idempotent": td.idempotent,
                "openWorld": td.open_world,
            },
            "admin_only": td.admin_only,
            "input_schema": td.args_model.model_json_schema(),
            "output_schema": td.output_model.model_json_schema(mode="serialization"),
        }
        for td in tools
    ]


async def _no_route(request: Request, exc: Exception) -> Response:
    hint = "REST is POST /v1/tools/{name} (GET /v1/tools lists them, /openapi.json describes them); MCP is /mcp"
    return error_response(NotFound(f"no route {request.url.path!r}", hint))


async def _wrong_method(request: Request, exc: Exception) -> Response:
    allowed = exc.headers.get("Allow", "") if isinstance(exc, HTTPException) and exc.headers else ""
    refused = InvalidInput(f"{request.method} is not allowed on {request.url.path}", f"use {allowed or 'another'}")
    return error_response(refused, status=405, headers={"Allow": allowed} if allowed else None)


# The app's handlers for the router's own refusals: our error JSON, not Starlette's plain text.
ROUTING_ERRORS = {404: _no_route, 405: _wrong_method}


def rest_routes(get_state: Callable[[], AppState]) -> list[Route]:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(_visible(get_state().platform.settings.read_only)))

    async def list_tools(request: Request) -> Response:
        """The tools this key may call with the toolsets this request asks for, as tools/list shows them."""
        state = get_state()
        read_only = state.platform.settings.read_only
        try:
            principal = principal_of(request.scope)
            toolsets = state.toolsets_of(request)
        except AgentHostError as exc:
            return error_response(exc)
        mine = [td for td in REGISTRY.values() if refusal(td, principal, read_only, toolsets) is None]
        return JSONResponse({"tools": tool_listing(mine)})

    async def call_tool(request: Request) -> Response:
        state = get_state()
        settings = state.platform.settings
        try:
            principal = principal_of(request.scope)
            td = REGISTRY.get(request.path_params["name"])
            if td is None or (settings.read_only and not td.read_only):
                raise NotFound(f"no tool named {request.path_params['name']!r}", "GET /v1/tools lists them")
            raw = await request.body()  # BodyLimit has bounded its size
            body = parse_json_body(raw, settings.max_json_depth)
            check_known(td, body)
            try:
                args = td.args_model.model_validate(body)
            except ValidationError as exc:
                raise invalid_arguments(td.name, exc) from exc
            arguments = {name: getattr(args, name) for name in td.args_model.model_fields}
            call = state.call_for(principal, toolsets=state.toolsets_of(request))
            idem_key = request.headers.get("idempotency-key")
            if idem_key is None or td.read_only:
                result = await run_tool(td, call, arguments)
                return Response(result.model_dump_json(), media_type="application/json")
            digest = hashlib.sha256(td.name.encode() + b"\0" + raw).hexdigest()
            return await _idempotent(td, call, arguments, idem_key, digest)
        except AgentHostError as exc:
            return error_response(exc)

    return [
        Route("/v1/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/tools", list_tools, methods=["GET"]),
        Route("/v1/tools/{name}", call_tool, methods=["POST"]),
    ]


def _replay(earlier: Earlier, action: str, request_hash: str) -> Response:
    """The answer to a retry of a claimed Idempotency-Key. Raises: Conflict, InProgress."""
    if (earlier.action, earlier.request_hash) != (action, request_hash):
        raise Conflict("this Idempotency-Key was used for a different request", "use a new key for a new request")
    if earlier.state == "running":
        raise InProgress(f"the first {action} with this Idempotency-Key is still running")
    if earlier.state == "secret" or earlier.body is None:
        raise Conflict(
            f"this {action} already ran with this Idempotency-Key, and its answer held a secret",
            "the first answer was shown once and is not kept: find what it made with a list tool (list_api_keys),"
            " or send a new Idempotency-Key to make another",
        )
    return Response(earlier.body, media_type="application/json", headers={"idempotent-replay": "true"})


async def _idempotent(td: ToolDef, call: Call, arguments: dict[str, Any], idem_key: str, digest: str) -> Response:
    if not 1 <= len(idem_key) <= 255:
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters", "use a UUID")
    admit(td, call, arguments)
    settings = call.platform.settings
    key_id = call.principal.key_id
    repo = call.platform.store.scoped(call.principal.tenant_id).idempotency
    earlier = await repo.reserve(key_id, idem_key, td.name, digest, settings.idempotency_lease_s)
    if earlier is not None:
        return _replay(earlier, td.name, digest)
    try:
        result = await execute(td, call, arguments)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await repo.release(key_id, idem_key)
        raise
    payload = result.model_dump_json()
    with anyio.CancelScope(shield=True):
        kept = None if td.answer_is_secret(arguments) else payload
        await repo.finish(key_id, idem_key, kept, settings.idempotency_ttl_s)
    return Response(payload, media_type="application/json")
