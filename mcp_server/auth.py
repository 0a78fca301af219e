"""Bearer keys → Principal, for every HTTP route except the public ones."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.errors import AgentHostError, Unauthorized
from orchestrator.models import Principal
from orchestrator.tenants import TenantManager

__all__ = ["PRINCIPAL_KEY", "BearerAuth", "principal_of"]

PRINCIPAL_KEY = "agenthost.principal"
PUBLIC_PATHS = {"/v1/health", "/openapi.json"}


def principal_of(scope: Scope) -> Principal:
    principal = scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise Unauthorized("request reached a tool without authentication")
    return principal


class BearerAuth:
    """Pure ASGI middleware (no buffering), so MCP's streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp, tenants_getter: Callable[[], TenantManager]) -> None:
        self.app = app
        self.tenants_getter = tenants_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise Unauthorized("missing bearer token")
            scope[PRINCIPAL_KEY] = await self.tenants_getter().authenticate(token)
        except AgentHostError as exc:
            body = json.dumps({"error": exc.to_dict()}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.status,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
