"""Bounds on what one HTTP request may carry: its body size (REST and /mcp alike) and, for REST, how deeply
its JSON nests. Both are refused with our error JSON before anything parses or validates the request."""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import AgentHostError, InvalidInput, TooLarge

__all__ = ["BodyLimit", "error_response", "parse_json_body"]


def error_response(
    exc: AgentHostError, status: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Our error JSON with the code's status (or ``status``), and Retry-After when waiting helps."""
    headers = dict(headers or {})
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return JSONResponse({"error": exc.to_dict()}, status_code=status or exc.status, headers=headers or None)


def _too_large(max_bytes: int) -> TooLarge:
    return TooLarge(f"request body is larger than {max_bytes} bytes")


class BodyLimit:
    """Reads a request's body, up to ``max_bytes``, before the app does: a declared Content-Length over the
    limit is refused at once, a chunked body as soon as the bytes read pass it. The app then reads the
    buffered body as usual (the MCP SDK and Starlette buffer it anyway)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(_too_large(self.max_bytes))(scope, receive, send)
            return
        body = bytearray()
        pending: deque[Message] = deque()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                pending.append(message)  # the client went away; the app learns it as usual
                break
            body.extend(message.get("body", b""))
            if len(body) > self.max_bytes:
                await error_response(_too_large(self.max_bytes))(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        pending.appendleft({"type": "http.request", "body": bytes(body), "more_body": False})

        async def replay() -> Message:
            return pending.popleft() if pending else await receive()

        await self.app(scope, replay, send)


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json_body(raw: bytes, max_depth: int) -> dict[str, Any]:
    """A REST body: a JSON object of the tool's arguments, nested at most ``max_depth`` deep.

    Raises: InvalidInput for anything else (never a RecursionError), and for text with a lone surrogate.
    """
    nested = InvalidInput(
        f"body is nested deeper than {max_depth} levels",
        "no tool takes arguments nested that deep: GET /v1/tools shows each tool's input schema",
    )
    try:
        body = json.loads(raw or b"{}")
    except RecursionError:
        raise nested from None
    except ValueError as exc:  # JSONDecodeError, and bytes that are not UTF-8
        raise InvalidInput(f"body is not JSON: {exc}", "send the tool's arguments as a JSON object") from exc
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object of the tool's arguments")
    if _deeper_than(body, max_depth):
        raise nested
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # json.loads lets '\\ud800' through as a lone surrogate, which no encoder takes
        raise InvalidInput(
            "body holds a lone UTF-16 surrogate escape (such as \\ud800 without its pair)",
            "send valid Unicode: a character outside the BMP is escaped as a pair (\\ud83d\\ude00), or sent as UTF-8",
        ) from None
    return body
