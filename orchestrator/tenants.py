"""Tenants, API keys and authentication."""

from __future__ import annotations

import time

from .errors import Forbidden, InvalidInput, NotFound, Unauthorized
from .models import ApiKeyInfo, NewApiKey, Principal, Role, Scope, Tenant, Usage, WhoAmI
from .quotas import check_count
from .secrets import new_api_key, parse_api_key, secret_matches
from .settings import Settings
from .store import Store

__all__ = ["ADMIN_TENANT", "TenantManager"]

ADMIN_TENANT = "admin"
_TOUCH_EVERY_S = 60.0


class TenantManager:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._touched: dict[str, float] = {}

    async def authenticate(self, presented: str | None) -> Principal:
        """Raises: Unauthorized for a missing, malformed, unknown or revoked key."""
        if not presented:
            raise Unauthorized("no API key given")
        key_id, secret = parse_api_key(presented)
        stored = await self.store.keys.find(key_id)
        # Compare even when the id is unknown, so timing does not reveal which ids exist.
        if not secret_matches(secret, stored.secret_hash if stored else b"\0" * 32) or stored is None:
            raise Unauthorized("invalid API key")
        if stored.revoked:
            raise Unauthorized("this API key was revoked", "ask an admin for a new key")
        now = time.monotonic()
        if now - self._touched.get(key_id, 0.0) > _TOUCH_EVERY_S:
            self._touched[key_id] = now
            await self.store.keys.touch(key_id)
        return Principal(
            tenant_id=stored.tenant_id,
            tenant_name=stored.tenant_name,
            role=stored.role,
            scope=stored.scope,
            key_id=stored.id,
        )

    async def bootstrap(self) -> NewApiKey | None:
        """Create the admin tenant and its first key when the platform has no tenants yet."""
        if await self.store.tenants.count():
            return None
        async with self.store.db.transaction() as tx:
            tenant = await self.store.tenants.create(ADMIN_TENANT, self.settings.quotas, tx)
            return await self._issue(tenant, "initial admin key", "admin", "full", tx)

    async def create_tenant(self, p: Principal | None, name: str) -> tuple[Tenant, NewApiKey]:
        """Create a tenant and its first (member) key. ``p`` is None for the operator CLI."""
        if p is not None and not p.is_admin:
            raise Forbidden("only admins create tenants")
        async with self.store.db.transaction() as tx:
            tenant = await self.store.tenants.create(name, self.settings.quotas, tx)
            key = await self._issue(tenant, f"first key of {name}", "member", "full", tx)
        return tenant, key

    async def _issue(self, tenant: Tenant, name: str, role: Role, scope: Scope, tx: object = None) -> NewApiKey:
        full, key_id, digest = new_api_key()
        info = await self.store.scoped(tenant.id).api_keys.insert(key_id, name, role, scope, digest, tx)  # type: ignore[arg-type]
        return NewApiKey(key=full, info=info)

    async def create_key(self, p: Principal, name: str, role: Role, scope: Scope, tenant_name: str | None) -> NewApiKey:
        if p.scope == "read":
            raise Forbidden("a read-only key cannot create keys")
        if role == "admin" and not p.is_admin:
            raise Forbidden("only admins create admin keys")
        if tenant_name is not None and tenant_name != p.tenant_name and not p.is_admin:
            raise Forbidden("only admins create keys for other tenants")
        tenant = (
            await self.store.tenants.by_name(tenant_name) if tenant_name else await self.store.tenants.get(p.tenant_id)
        )
        if role == "admin" and tenant.name != ADMIN_TENANT:
            raise InvalidInput("admin keys belong to the admin tenant", "create a member key for this tenant")
        async with self.store.db.transaction() as tx:
            active = await self.store.scoped(tenant.id).api_keys.count_active(tx)
            check_count(active, tenant.quotas.max_api_keys, "API keys", "revoke_api_key keys no longer in use")
            return await self._issue(tenant, name, role, scope, tx)

    async def list_keys(self, p: Principal) -> list[ApiKeyInfo]:
        return await self.store.scoped(p.tenant_id).api_keys.all()

    async def describe_revoke(self, p: Principal, key_id: str) -> str | None:
        """The question before revoking a key; None when it is revoked already. Raises: NotFound."""
        info = await self.store.scoped(p.tenant_id).api_keys.get(key_id)
        if info is None:
            raise NotFound(f"no API key {key_id!r} in your tenant", "list_api_keys shows your keys")
        if info.revoked:
            return None
        await self._check_not_last_admin(p, info)
        yours = " This is the key you are calling with: this session stops working." if key_id == p.key_id else ""
        return (
            f"Revoke API key {info.id} ({info.name!r}, {info.role}, {info.scope} scope)? Every agent, script and"
            f" client that uses it is refused from then on, and it cannot be turned back on.{yours}"
        )

    async def _check_not_last_admin(self, p: Principal, info: ApiKeyInfo) -> None:
        if info.role == "admin" and await self.store.scoped(p.tenant_id).api_keys.count_active_admins() <= 1:
            raise InvalidInput("this is the last admin key", "create another admin key first")

    async def revoke_key(self, p: Principal, key_id: str) -> ApiKeyInfo:
        repo = self.store.scoped(p.tenant_id).api_keys
        info = await repo.get(key_id)
        if info is None:
            raise NotFound(f"no API key {key_id!r} in your tenant", "list_api_keys shows your keys")
        if info.revoked:
            return info
        await self._check_not_last_admin(p, info)
        await repo.revoke(key_id)
        # Its OAuth tokens die with it (authentication also refuses them, should this step not have run).
        await self.store.oauth.forget_key(key_id)
        revoked = await repo.get(key_id)
        assert revoked is not None
        return revoked

    async def whoami(self, p: Principal, usage: Usage) -> WhoAmI:
        tenant = await self.store.tenants.get(p.tenant_id)
        return WhoAmI(
            tenant=tenant.name,
            tenant_id=tenant.id,
            role=p.role,
            scope=p.scope,
            key_id=p.key_id,
            quotas=tenant.quotas,
            usage=usage,
        )
