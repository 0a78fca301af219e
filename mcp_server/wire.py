"""What a result or an error looks like on the MCP wire.

A tool's answer is its structured output, with the same JSON, compact, as text, then links to the resources
it names (``links.py``). A tool error is a
result with ``isError``, ``structuredContent`` ``{code, message, hint, retry_after_s?}``, the code again
in ``_meta`` and a text that starts with ``[code]``. Resources and prompts have no error result: their
errors are JSON-RPC errors, ``-32602`` (invalid params) for anything the caller can fix (a status under
500: an unknown resource, a missing argument), ``-32603`` otherwise, with the same object as ``data``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from orchestrator.errors import AgentHostError, InvalidInput, NotFound

from .links import resource_links
from .registry import invalid_arguments

__all__ = ["CODE_META", "compact_json", "error_result", "protocol_error", "sdk_refusal", "tool_result"]

log = logging.getLogger(__name__)

CODE_META = "agenthost/code"


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def tool_result(model: BaseModel) -> CallToolResult:
    structured = model.model_dump(mode="json", by_alias=True)
    text = TextContent(type="text", text=compact_json(structured))
    return CallToolResult(content=[text, *resource_links(model)], structured_content=structured)


def error_result(exc: AgentHostError) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=str(exc))],
        structured_content=exc.to_dict(),
        is_error=True,
        meta={CODE_META: exc.code},
    )


def protocol_error(exc: AgentHostError) -> MCPError:
    return MCPError(INVALID_PARAMS if exc.status < 500 else INTERNAL_ERROR, str(exc), exc.to_dict())


def sdk_refusal(tool_name: str, exc: ToolError) -> AgentHostError:
    """Our error for one the MCP SDK raised around a tool call: a crash is ``internal`` (logged here), an
    argument that failed the SDK's validation ``invalid_input`` in the wording REST uses."""
    if isinstance(exc, UnexpectedToolError):
        log.error("tool %s failed in the MCP SDK", tool_name, exc_info=exc)
        return AgentHostError(f"{tool_name} failed unexpectedly")
    cause = exc.__cause__
    while isinstance(cause, ToolError):  # the SDK wraps what a confirmation resolver raised, once or more
        cause = cause.__cause__
    if isinstance(cause, AgentHostError):
        return cause
    if isinstance(exc.__cause__, ValidationError):
        return invalid_arguments(tool_name, exc.__cause__)
    if str(exc) == f"Unknown tool: {tool_name}":  # not registered, or hidden on a read-only server
        return NotFound(f"no tool named {tool_name!r}", "tools/list lists the tools this key may call")
    return InvalidInput(str(exc).removeprefix(f"Error executing tool {tool_name}: "))
