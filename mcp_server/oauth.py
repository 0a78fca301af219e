"""OAuth 2.1 for remote MCP clients: the MCP SDK's authorization-server routes (metadata RFC 8414, dynamic
registration RFC 7591, PKCE S256, token, revocation RFC 7009) and protected resource metadata (RFC 9728), over
``OAuthGrants`` in the core. The user consents on our page (mcp_server/consent.py) by pasting an API key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    IdentityAssertionParams,
    RefreshToken,
    TokenError,
)
from mcp.server.auth.routes import create_auth_routes, create_protected_resource_routes, validate_issuer_url
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl
from starlette.routing import Route

from orchestrator.errors import Unauthorized
from orchestrator.oauth import AuthRequest, CodeGrant, IssuedTokens, OAuthGrants, TokenGrant

from .consent import CONSENT_PATH, consent_routes

__all__ = ["OAUTH_PATHS", "PRM_PATH", "SCOPES", "issuer_settings", "oauth_routes"]

SCOPES = ["full", "read"]
PRM_PATH = "/.well-known/oauth-protected-resource"
OAUTH_PATHS = frozenset(
    {PRM_PATH, "/.well-known/oauth-authorization-server", "/authorize", "/token", "/register", "/revoke", CONSENT_PATH}
)


class _Code(AuthorizationCode):
    grant: CodeGrant


class _Refresh(RefreshToken):
    grant: TokenGrant


class _Access(AccessToken):
    grant: TokenGrant


def _grant_fields(grant: TokenGrant) -> dict[str, Any]:
    """What the SDK's token models hold of one of our grants."""
    return {
        "client_id": grant.client_id,
        "scopes": [grant.scope],
        "expires_at": int(grant.expires_at),
        "resource": grant.resource,
        "subject": grant.key_id,
        "grant": grant,
    }


def _oauth_token(issued: IssuedTokens) -> OAuthToken:
    return OAuthToken(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        scope=issued.scope,
        refresh_token=issued.refresh_token,
    )


class GrantProvider:
    """The SDK's ``OAuthAuthorizationServerProvider`` over ``OAuthGrants``."""

    def __init__(self, grants: Callable[[], OAuthGrants], issuer: str) -> None:
        self._grants = grants
        self.issuer = issuer

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        info = await self._grants().client(client_id)
        return OAuthClientInformationFull.model_validate_json(info) if info else None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        await self._grants().register_client(client_info.client_id, client_info.model_dump_json())

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        # RFC 8707: tokens are for this server (MCP and REST) only.
        if params.resource is not None and not _within(params.resource, self.issuer):
            raise AuthorizeError("invalid_target", f"this server issues tokens for {self.issuer} only")
        request = AuthRequest(
            redirect_uri=str(params.redirect_uri),
            redirect_uri_explicit=params.redirect_uri_provided_explicitly,
            code_challenge=params.code_challenge,
            state=params.state,
            scopes=params.scopes,
            resource=params.resource,
        )
        pending = await self._grants().begin(client.client_id, request)
        return f"{self.issuer}{CONSENT_PATH}?{urlencode({'pending': pending})}"

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> _Code | None:
        # Loading spends the code, so a failed PKCE or redirect check burns it too: one attempt per code.
        grant = await self._grants().redeem(client.client_id, authorization_code)
        if grant is None:
            return None
        return _Code(
            code=authorization_code,
            scopes=[grant.scope],
            expires_at=grant.expires_at,
            client_id=grant.client_id,
            code_challenge=grant.request.code_challenge,
            redirect_uri=AnyUrl(grant.request.redirect_uri),
            redirect_uri_provided_explicitly=grant.request.redirect_uri_explicit,
            resource=grant.request.resource,
            subject=grant.key_id,
            grant=grant,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: _Code
    ) -> OAuthToken:
        try:
            return _oauth_token(await self._grants().exchange(authorization_code.grant))
        except Unauthorized as exc:
            raise TokenError("invalid_grant", exc.message) from exc

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> _Refresh | None:
        grant = await self._grants().refresh_token(client.client_id, refresh_token)
        if grant is None:
            return None
        return _Refresh(token=refresh_token, **_grant_fields(grant))

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: _Refresh, scopes: list[str]
    ) -> OAuthToken:
        try:
            return _oauth_token(await self._grants().refresh(refresh_token.grant, scopes))
        except Unauthorized as exc:
            raise TokenError("invalid_grant", exc.message) from exc

    async def load_access_token(self, token: str) -> _Access | None:
        grant = await self._grants().access_token(token)
        if grant is None:
            return None
        return _Access(token=token, **_grant_fields(grant))

    async def revoke_token(self, token: _Access | _Refresh) -> None:
        await self._grants().revoke(token.grant.grant_id)

    async def exchange_identity_assertion(
        self, client: OAuthClientInformationFull, params: IdentityAssertionParams
    ) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "only the authorization code and refresh token grants are supported")


def _within(resource: str, base: str) -> bool:
    resource = resource.rstrip("/")
    return resource == base or resource.startswith(f"{base}/")


def issuer_settings(issuer: str) -> AuthSettings:
    """Raises: ValueError when ``issuer`` is not an https URL (http only on loopback) without query or fragment."""
    settings = AuthSettings(issuer_url=issuer, resource_server_url=issuer, validate_token_resource=False)
    if settings.issuer_url.path not in (None, "", "/"):
        raise ValueError("the OAuth issuer is the server's base URL, without a path")
    validate_issuer_url(settings.issuer_url)
    return settings


def oauth_routes(settings: AuthSettings, grants: Callable[[], OAuthGrants]) -> list[Route]:
    issuer = str(settings.issuer_url)
    provider = GrantProvider(grants, issuer)
    routes = create_auth_routes(
        provider,
        settings.issuer_url,
        client_registration_options=ClientRegistrationOptions(enabled=True, valid_scopes=SCOPES, default_scopes=SCOPES),
        revocation_options=RevocationOptions(enabled=True),
    )
    prm = create_protected_resource_routes(
        settings.issuer_url, [settings.issuer_url], scopes_supported=SCOPES, resource_name="agenthost"
    )
    return [*routes, *prm, *consent_routes(grants, issuer)]
