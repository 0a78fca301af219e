"""How a registered tool becomes an MCP tool: its handler (the gate, then the tool, errors as results), the
confirmation question put by elicitation before it runs, and the SDK's Tool made once per process."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Annotated, Any

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel

from orchestrator.errors import AgentHostError, Unauthorized
from orchestrator.models import Principal
from orchestrator.progress import Monotonic

from .auth import principal_of
from .registry import REGISTRY, Call, ToolDef, admit, run_tool
from .state import AppState
from .wire import error_result, tool_result

__all__ = ["call_from_ctx", "principal_for", "sdk_tools"]

log = logging.getLogger(__name__)


class _Confirm(BaseModel):
    confirm: bool


async def principal_for(state: AppState, request: object) -> Principal:
    """Over HTTP, BearerAuth's; over stdio, the session key's, authenticated again now. Raises: Unauthorized."""
    scope = getattr(request, "scope", None)
    if scope is not None:
        return principal_of(scope)
    if state.stdio_key is None:
        raise Unauthorized("no API key for this stdio session", "set AGENTHOST_API_KEY for `agenthost mcp`")
    return await state.platform.tenants.authenticate(state.stdio_key)


async def call_from_ctx(ctx: Context[AppState, Any], answer: bool | None = None) -> Call:
    state = ctx.request_context.lifespan_context
    principal = await principal_for(state, ctx.request_context.request)
    toolsets = state.toolsets_of(ctx.request_context.request)

    async def send(message: str, progress: float | None = None, total: float | None = None) -> None:
        try:
            await ctx.report_progress(progress or 0.0, total, message)
        except Exception:  # a client that went away must not fail the work itself
            log.debug("progress notification dropped", exc_info=True)

    return state.call_for(principal, report=Monotonic(send), answer=answer, toolsets=toolsets)


_KW = inspect.Parameter.KEYWORD_ONLY


def _can_ask(ctx: Context[AppState, Any]) -> bool:
    """Whether the client can put a form question to its user (a bare ``elicitation: {}`` means form)."""
    caps = ctx.client_capabilities
    asks = caps.elicitation if caps is not None else None
    return asks is not None and (asks.form is not None or asks.url is None)


def _confirmation_resolver(td: ToolDef) -> Callable[..., Any] | None:
    """For a destructive tool: ask the user the tool's question by elicitation, when the client can.

    It runs before the tool, with the gate's checks first (without taking a rate-limit token, so a
    read-only key is refused rather than asked) and the target looked up (a missing one is not_found,
    nobody is asked). The agent's own confirm=true does not skip the question: the user answers it.
    The SDK carries the question in whichever way the negotiated protocol allows (a request
    mid-call, or an input-required round trip, where this runs again and must ask the same)."""
    ask = td.ask
    if ask is None:
        return None

    async def resolver(ctx: Context[AppState, Any], **arguments: Any) -> Elicit[_Confirm] | None:
        if not _can_ask(ctx):
            return None
        try:
            call = replace(await call_from_ctx(ctx), limiter=None)
            admit(td, call, arguments)
            question = await ask(call, **arguments)
        except AgentHostError as exc:
            raise ToolError(str(exc)) from exc
        return None if question is None else Elicit(question, _Confirm)

    params = [inspect.Parameter("ctx", _KW, annotation=Context)]
    params += [inspect.Parameter(p.name, _KW, annotation=Any) for p in td.params]
    resolver.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    resolver.__annotations__ = {p.name: p.annotation for p in params}
    return resolver


def _answer(outcome: object) -> bool | None:
    """The user's answer to the resolver's question; None when the client could not be asked."""
    if isinstance(outcome, AcceptedElicitation):
        return outcome.data.confirm if isinstance(outcome.data, _Confirm) else None
    return False if outcome is not None else None


def _mcp_handler(td: ToolDef) -> Callable[..., Any]:
    async def handler(ctx: Context[AppState, Any], **kwargs: Any) -> CallToolResult:
        answer = _answer(kwargs.pop("user_confirmation", None))
        try:
            return tool_result(await run_tool(td, await call_from_ctx(ctx, answer), kwargs))
        except AgentHostError as exc:
            return error_result(exc)

    params = [p.replace(kind=_KW) for p in td.params]
    ctx_param = inspect.Parameter("ctx", _KW, annotation=Context)
    resolver = _confirmation_resolver(td)
    if resolver is not None:
        annotation = Annotated[ElicitationResult[_Confirm], Resolve(resolver)]
        params.append(inspect.Parameter("user_confirmation", _KW, annotation=annotation))
    handler.__signature__ = inspect.Signature([ctx_param, *params], return_annotation=td.output_model)  # type: ignore[attr-defined]
    handler.__annotations__ = {"ctx": Context, **{p.name: p.annotation for p in params}, "return": td.output_model}
    handler.__name__ = td.name
    handler.__doc__ = td.description
    return handler


@cache
def sdk_tools() -> tuple[Tool, ...]:
    """The SDK's tools, made once per process: making one generates its schemas (about 12 ms a tool), and
    they hold nothing of the server they serve (a call finds its platform through its context)."""
    return tuple(
        Tool.from_function(
            _mcp_handler(td),
            name=td.name,
            title=td.title,
            description=td.description,
            annotations=_annotations(td),
            structured_output=True,
        )
        for td in REGISTRY.values()
    )


def _annotations(td: ToolDef) -> ToolAnnotations:
    """Every hint stated (the spec's defaults are the pessimistic ones), except destructive and idempotent on
    a read-only tool, where the spec says they mean nothing."""
    if td.read_only:
        return ToolAnnotations(read_only_hint=True, open_world_hint=td.open_world)
    return ToolAnnotations(
        read_only_hint=False,
        destructive_hint=td.destructive,
        idempotent_hint=td.idempotent,
        open_world_hint=td.open_world,
    )
