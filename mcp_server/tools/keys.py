"""API keys and tenants."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from orchestrator.models import NAME_PATTERN, ApiKeyInfo, ApiKeyList, NewApiKey, Role, Scope, Tenant

from ..registry import Call, tool
from .args import Confirm


class NewTenant(BaseModel):
    tenant: Tenant
    key: NewApiKey


@tool(title="Create API key", secret_answer=True)
async def create_api_key(
    call: Call,
    name: Annotated[str, Field(min_length=1, max_length=64, description="a label for the key")],
    role: Role = "member",
    scope: Annotated[Scope, Field(description="'read' keys can only call read-only tools")] = "full",
    tenant: Annotated[str | None, Field(description="admins only: create the key in another tenant")] = None,
) -> NewApiKey:
    """Create an API key (ah_KEYID.SECRET). The full key is returned once: hand it over now."""
    return await call.platform.tenants.create_key(call.principal, name, role, scope, tenant)


@tool(read_only=True, title="List API keys")
async def list_api_keys(call: Call) -> ApiKeyList:
    """Your tenant's API keys (ids, roles, scopes, last use); secrets are never shown again."""
    return ApiKeyList(keys=await call.platform.tenants.list_keys(call.principal))


async def _ask_revoke(call: Call, key_id: str, **_: Any) -> str | None:
    return await call.platform.tenants.describe_revoke(call.principal, key_id.removeprefix("ah_"))


@tool(destructive=True, idempotent=True, title="Revoke API key", ask=_ask_revoke)
async def revoke_api_key(
    call: Call,
    key_id: Annotated[str, Field(min_length=1, max_length=32, description="id from list_api_keys")],
    confirm: Confirm = False,
) -> ApiKeyInfo:
    """Revoke a key of your tenant at once; requests with it fail from then on."""
    return await call.platform.tenants.revoke_key(call.principal, key_id.removeprefix("ah_"))


@tool(admin_only=True, title="Create tenant", secret_answer=True)
async def create_tenant(
    call: Call, name: Annotated[str, Field(pattern=NAME_PATTERN, description="tenant name")]
) -> NewTenant:
    """Admin: create a tenant and its first member key (returned once)."""
    tenant, key = await call.platform.tenants.create_tenant(call.principal, name)
    return NewTenant(tenant=tenant, key=key)
