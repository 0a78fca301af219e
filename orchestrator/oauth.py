"""OAuth 2.1 grants bound to API keys: the authorization server's use-cases, without HTTP.

A user consents by pasting an API key; the code and tokens issued then carry that key's tenant, role and
scope (narrowed to ``read`` when the client asked only for that). A grant (one consent) is a chain: its code,
then one live access and refresh token at a time. Codes are single-use and short-lived; a code or a rotated
refresh token presented again revokes its whole grant, since one of the two parties holding it is a thief.
Revoking the key revokes its grants; authentication also checks the key, so a token never outlives its key.
"""

from __future__ import annotations

import secrets
import time

from pydantic import BaseModel

from .errors import InvalidInput, Unauthorized
from .models import Principal, Scope
from .secrets import hash_key_secret
from .settings import Settings
from .store import Store
from .tenants import TenantManager

__all__ = ["AuthRequest", "CodeGrant", "IssuedTokens", "OAuthGrants", "PendingConsent", "TokenGrant"]

CODE_TTL_S = 60.0
CONSENT_TTL_S = 600.0


class AuthRequest(BaseModel):
    """What a client asked for at the authorization endpoint (validated there)."""

    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    state: str | None = None
    scopes: list[str] | None = None
    resource: str | None = None


class PendingConsent(BaseModel):
    client_id: str
    request: AuthRequest


class CodeGrant(BaseModel):
    code: str
    grant_id: str
    client_id: str
    key_id: str
    scope: Scope
    request: AuthRequest
    expires_at: float


class TokenGrant(BaseModel):
    """A live access or refresh token, as presented."""

    token: str
    grant_id: str
    client_id: str
    key_id: str
    scope: Scope
    resource: str | None
    expires_at: float


class IssuedTokens(BaseModel):
    access_token: str
    refresh_token: str
    expires_in: int
    scope: Scope


def _scope(key_scope: Scope, requested: list[str] | None) -> Scope:
    if key_scope == "read" or (requested and "full" not in requested):
        return "read"
    return "full"


class OAuthGrants:
    def __init__(self, settings: Settings, store: Store, tenants: TenantManager) -> None:
        self.settings = settings
        self.repo = store.oauth
        self.keys = store.keys
        self.tenants = tenants

    async def register_client(self, client_id: str, info_json: str) -> None:
        await self.repo.add_client(client_id, info_json)

    async def client(self, client_id: str) -> str | None:
        """The client's registration (JSON), or None."""
        return await self.repo.client(client_id)

    async def begin(self, client_id: str, request: AuthRequest) -> str:
        """Record an authorization awaiting the user's consent; returns its id (the consent page's state)."""
        pending_id = secrets.token_urlsafe(32)
        expires = time.time() + CONSENT_TTL_S
        await self.repo.add_pending(hash_key_secret(pending_id), client_id, request.model_dump_json(), expires)
        return pending_id

    async def pending(self, pending_id: str) -> PendingConsent | None:
        row = await self.repo.pending(hash_key_secret(pending_id)) if pending_id else None
        if row is None:
            return None
        return PendingConsent(client_id=row["client_id"], request=AuthRequest.model_validate_json(row["request"]))

    async def approve(self, pending_id: str, api_key: str) -> tuple[AuthRequest, str]:
        """The user consents with ``api_key``: returns the request and a code bound to the key.

        Raises: InvalidInput for an unknown, expired or answered consent; Unauthorized for a bad key (the
        consent stays open, so the user can paste the right one)."""
        if await self.pending(pending_id) is None:
            raise _unknown_consent()
        principal = await self.tenants.authenticate(api_key)
        row = await self.repo.take_pending(hash_key_secret(pending_id))
        if row is None:
            raise _unknown_consent()
        request = AuthRequest.model_validate_json(row["request"])
        code = "ahc_" + secrets.token_urlsafe(32)
        await self.repo.add_code(
            hash_key_secret(code),
            secrets.token_hex(16),
            row["client_id"],
            principal.key_id,
            _scope(principal.scope, request.scopes),
            row["request"],
            time.time() + CODE_TTL_S,
        )
        return request, code

    async def deny(self, pending_id: str) -> AuthRequest | None:
        row = await self.repo.take_pending(hash_key_secret(pending_id)) if pending_id else None
        return AuthRequest.model_validate_json(row["request"]) if row else None

    async def redeem(self, client_id: str, code: str) -> CodeGrant | None:
        """Spend a code of this client. A code presented a second time revokes what the first use got."""
        row, replayed_grant = await self.repo.use_code(hash_key_secret(code), client_id)
        if replayed_grant is not None:
            await self.repo.revoke_grant(replayed_grant)
        if row is None:
            return None
        return CodeGrant(
            code=code,
            grant_id=row["grant_id"],
            client_id=row["client_id"],
            key_id=row["key_id"],
            scope=row["scope"],
            request=AuthRequest.model_validate_json(row["request"]),
            expires_at=row["expires_at"],
        )

    async def exchange(self, grant: CodeGrant) -> IssuedTokens:
        """Raises: Unauthorized when the key was revoked since the user consented."""
        return await self._issue(grant.grant_id, grant.client_id, grant.key_id, grant.scope, grant.request.resource)

    async def access_token(self, token: str) -> TokenGrant | None:
        row = await self.repo.token(hash_key_secret(token), "access")
        return _token_grant(token, row) if row else None

    async def refresh_token(self, client_id: str, token: str) -> TokenGrant | None:
        """A live refresh token of this client. One presented again after it was rotated revokes its grant."""
        row = await self.repo.token(hash_key_secret(token), "refresh")
        if row is None or row["client_id"] != client_id:
            return None
        if row["rotated_at"] is not None:
            await self.repo.revoke_grant(row["grant_id"])
            return None
        return _token_grant(token, row)

    async def refresh(self, grant: TokenGrant, scopes: list[str]) -> IssuedTokens:
        """Rotate: the refresh token and the grant's access token end, a new pair begins.

        Raises: Unauthorized when the refresh token was rotated meanwhile or its key was revoked."""
        if not await self.repo.rotate(hash_key_secret(grant.token)):
            raise Unauthorized("this refresh token was already used", "authorize again")
        scope = _scope(grant.scope, scopes)
        return await self._issue(grant.grant_id, grant.client_id, grant.key_id, scope, grant.resource)

    async def revoke(self, grant_id: str) -> None:
        await self.repo.revoke_grant(grant_id)

    async def authenticate(self, token: str) -> Principal:
        """Raises: Unauthorized for an unknown, expired or revoked access token, or one whose key was revoked."""
        row = await self.repo.token(hash_key_secret(token), "access")
        if row is None:
            raise Unauthorized(
                "invalid, expired or revoked OAuth access token", "refresh the token, or authorize the client again"
            )
        return Principal(
            tenant_id=row["tenant_id"],
            tenant_name=row["tenant_name"],
            role=row["role"],
            scope=row["scope"],
            key_id=row["key_id"],
        )

    async def _issue(
        self, grant_id: str, client_id: str, key_id: str, scope: Scope, resource: str | None
    ) -> IssuedTokens:
        stored = await self.keys.find(key_id)
        if stored is None or stored.revoked:
            await self.repo.revoke_grant(grant_id)
            raise Unauthorized("the API key behind this authorization was revoked", "authorize again with a valid key")
        now = time.time()
        access, refresh = "aho_" + secrets.token_urlsafe(32), "ahr_" + secrets.token_urlsafe(32)
        access_ttl, refresh_ttl = self.settings.oauth_access_token_ttl_s, self.settings.oauth_refresh_token_ttl_s
        await self.repo.add_tokens(
            grant_id,
            client_id,
            key_id,
            scope,
            resource,
            [
                (hash_key_secret(access), "access", now + access_ttl),
                (hash_key_secret(refresh), "refresh", now + refresh_ttl),
            ],
        )
        return IssuedTokens(access_token=access, refresh_token=refresh, expires_in=access_ttl, scope=scope)


def _token_grant(token: str, row: object) -> TokenGrant:
    r: dict[str, object] = dict(row)  # type: ignore[call-overload]
    return TokenGrant.model_validate({**r, "token": token})


def _unknown_consent() -> InvalidInput:
    return InvalidInput(
        "this authorization request is unknown, expired or already answered",
        "start the authorization again from your MCP client",
    )
