"""OAuth grants over the store: what the e2e tests cannot see from outside (hashing, replay of a rotated
refresh token, scope narrowing), and the issuer's validation."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcp_server.oauth import issuer_settings
from orchestrator.errors import Unauthorized
from orchestrator.oauth import AuthRequest, OAuthGrants
from orchestrator.secrets import SecretBox
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.tenants import TenantManager

pytestmark = pytest.mark.anyio

REQUEST = AuthRequest(redirect_uri="http://127.0.0.1:9/cb", redirect_uri_explicit=True, code_challenge="c" * 43)


@pytest.fixture
async def grants(tmp_path: Path) -> AsyncIterator[tuple[OAuthGrants, TenantManager, Store]]:
    settings = Settings(data_dir=tmp_path)
    store = await Store.open(tmp_path / "db.sqlite", SecretBox(b"k" * 32))
    tenants = TenantManager(settings, store)
    try:
        yield OAuthGrants(settings, store, tenants), tenants, store
    finally:
        await store.close()


async def _consent(grants: OAuthGrants, key: str, scopes: list[str] | None = None) -> str:
    await grants.register_client("c1", '{"client_id": "c1", "client_secret": "s3cret", "redirect_uris": []}')
    pending = await grants.begin("c1", REQUEST.model_copy(update={"scopes": scopes}))
    _, code = await grants.approve(pending, key)
    return code


async def test_secrets_are_stored_hashed_or_encrypted(
    grants: tuple[OAuthGrants, TenantManager, Store], tmp_path: Path
) -> None:
    oauth, tenants, store = grants
    store_path = tmp_path / "db.sqlite"
    _, first = await tenants.create_tenant(None, "a")
    code = await _consent(oauth, first.key)
    redeemed = await oauth.redeem("c1", code)
    assert redeemed is not None
    issued = await oauth.exchange(redeemed)
    # What the data dir holds, as anyone who reads the file sees it.
    with sqlite3.connect(store_path) as raw:
        dump = "\n".join(raw.iterdump())
    assert 'INSERT INTO "oauth_tokens"' in dump and 'INSERT INTO "oauth_clients"' in dump
    for secret in (code, issued.access_token, issued.refresh_token, "s3cret"):
        assert secret not in dump


async def test_a_rotated_refresh_token_presented_again_revokes_its_grant(
    grants: tuple[OAuthGrants, TenantManager, Store],
) -> None:
    oauth, tenants, _ = grants
    _, first = await tenants.create_tenant(None, "a")
    redeemed = await oauth.redeem("c1", await _consent(oauth, first.key))
    assert redeemed is not None
    issued = await oauth.exchange(redeemed)
    grant = await oauth.refresh_token("c1", issued.refresh_token)
    assert grant is not None
    rotated = await oauth.refresh(grant, [grant.scope])
    assert (await oauth.authenticate(rotated.access_token)).tenant_name == "a"
    with pytest.raises(Unauthorized):
        await oauth.authenticate(issued.access_token)
    # The old refresh token comes back (a thief, or the client after a thief): the whole grant ends.
    assert await oauth.refresh_token("c1", issued.refresh_token) is None
    with pytest.raises(Unauthorized):
        await oauth.authenticate(rotated.access_token)
    assert await oauth.refresh_token("c1", rotated.refresh_token) is None


async def test_a_client_asking_only_for_read_gets_read(grants: tuple[OAuthGrants, TenantManager, Store]) -> None:
    oauth, tenants, _ = grants
    _, first = await tenants.create_tenant(None, "a")
    redeemed = await oauth.redeem("c1", await _consent(oauth, first.key, ["read"]))
    assert redeemed is not None
    issued = await oauth.exchange(redeemed)
    assert issued.scope == "read"
    assert (await oauth.authenticate(issued.access_token)).scope == "read"


@pytest.mark.parametrize(
    ("issuer", "ok"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("https://agenthost.internal", True),
        ("http://10.0.0.5:8080", False),
        ("https://agenthost.internal/mcp", False),
        ("https://agenthost.internal?x=1", False),
    ],
)
def test_issuer_is_an_https_base_url_unless_loopback(issuer: str, ok: bool) -> None:
    if ok:
        assert str(issuer_settings(issuer).issuer_url) == issuer
    else:
        with pytest.raises(ValueError, match="(?i)https|path|query"):
            issuer_settings(issuer)
