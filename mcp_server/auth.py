"""Bearer API keys and OAuth access tokens → Principal, for every HTTP route except the public ones.

A 401 names the protected resource metadata (RFC 9728) when OAuth is on, so a remote MCP client can discover
the authorization server and ask its user to consent."""

from __future__ import annotations

import json
from collections.abc import Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.errors import AgentHostError, Unauthorized
from orchestrator.models import Principal
from orchestrator.oauth import OAuthGrants
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

    def __init__(
        self,
        app: ASGIApp,
        tenants_getter: Callable[[], TenantManager],
        grants_getter: Callable[[], OAuthGrants] | None = None,
        resource_metadata: str | None = None,
        public_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.tenants_getter = tenants_getter
        self.grants_getter = grants_getter
        self.public_paths = PUBLIC_PATHS | public_paths
        self.metadata = f'resource_metadata="{resource_metadata}"' if resource_metadata else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise Unauthorized("missing bearer token")
            if token.startswith("ah_") or self.grants_getter is None:
                principal = await self.tenants_getter().authenticate(token)
            else:
                principal = await self.grants_getter().authenticate(token)
            scope[PRINCIPAL_KEY] = principal
            # The MCP SDK ties a session to the credential in scope["user"] (SessionGate does the same).
            scope["user"] = AuthenticatedUser(
                AccessToken(token=principal.key_id, client_id=principal.key_id, scopes=[principal.scope])
            )
        except AgentHostError as exc:
            body = json.dumps({"error": exc.to_dict()}).encode()
            # RFC 6750 3.1: a presented credential that failed is an invalid_token; RFC 9728 5.1: where to look.
            params = [p for p in ('error="invalid_token"' if token else "", self.metadata) if p]
            challenge = f"Bearer {', '.join(params)}" if params else "Bearer"
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", challenge.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
