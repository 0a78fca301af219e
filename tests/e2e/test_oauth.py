"""OAuth 2.1 for remote MCP clients, against `agenthost serve`: the SDK's OAuth client end to end, and attacks
on the authorization server. The test plays the user: it follows the redirect to the consent page and posts a key."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from .harness import INITIALIZE, AgentHost, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the test reads the code off the redirect


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


async def consent(user: httpx.AsyncClient, authorize_url: str, key: str) -> dict[str, str]:
    """Be the user: open the authorization URL, paste ``key`` on the consent page; returns the redirect's query."""
    start = await user.get(authorize_url)
    assert start.status_code == 302, start.text
    page = await user.get(start.headers["location"])
    assert page.status_code == 200
    assert 'type="password"' in page.text and 'name="api_key"' in page.text
    assert page.headers["x-frame-options"] == "DENY"
    pending = re.search(r'name="pending" value="([^"]+)"', page.text)
    assert pending is not None, page.text
    done = await user.post(str(page.url).split("?")[0], data={"pending": pending.group(1), "api_key": key})
    assert done.status_code == 302, done.text
    location = done.headers["location"]
    assert location.startswith(REDIRECT)
    assert key not in location
    return {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}


def user_agent(base: str, key: str) -> tuple[Callable[[str], Awaitable[None]], Callable[[], Awaitable[Any]]]:
    """The SDK client's redirect and callback handlers, played by a user who pastes ``key``."""
    answer: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:
        assert url.startswith(f"{base}/authorize?")
        async with httpx.AsyncClient(timeout=30) as user:
            answer.clear()
            answer.update(await consent(user, url, key))

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=answer["code"], state=answer.get("state"))

    return redirect_handler, callback_handler


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def register(http: httpx.AsyncClient, base: str) -> dict[str, Any]:
    r = await http.post(f"{base}/register", json={"redirect_uris": [REDIRECT], "client_name": "attack test"})
    assert r.status_code == 201, r.text
    client: dict[str, Any] = r.json()
    return client


async def code_for(http: httpx.AsyncClient, base: str, client: dict[str, Any], key: str, challenge: str) -> str:
    state = secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    answer = await consent(http, str(httpx.URL(f"{base}/authorize", params=query)), key)
    assert answer["state"] == state
    return answer["code"]


async def token(http: httpx.AsyncClient, base: str, client: dict[str, Any], **form: str) -> httpx.Response:
    data = {"client_id": client["client_id"], "client_secret": client["client_secret"], **form}
    return await http.post(f"{base}/token", data=data)


async def exchange(
    http: httpx.AsyncClient, base: str, client: dict[str, Any], code: str, verifier: str
) -> httpx.Response:
    return await token(
        http, base, client, grant_type="authorization_code", code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )


async def mcp_status(http: httpx.AsyncClient, base: str, access_token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json, text/event-stream"}
    return await http.post(f"{base}/mcp", json=INITIALIZE, headers=headers)


async def tokens_for(http: httpx.AsyncClient, base: str, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    client = await register(http, base)
    verifier, challenge = pkce()
    r = await exchange(http, base, client, await code_for(http, base, client, key, challenge), verifier)
    assert r.status_code == 200, r.text
    return client, r.json()


async def new_key(agenthost: AgentHost, key: str, name: str) -> tuple[str, str]:
    async with connect(agenthost, key, "http") as client:
        made = await call(client, "create_api_key", {"name": name})
    return made["key"], made["info"]["id"]


async def revoke(agenthost: AgentHost, key: str, key_id: str) -> None:
    async with connect(agenthost, key, "http") as client:
        await call(client, "revoke_api_key", {"key_id": key_id, "confirm": True})


async def test_discovery_metadata_and_challenge(agenthost: AgentHost) -> None:
    base = agenthost.url
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(f"{base}/mcp", json=INITIALIZE)
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        assert f'resource_metadata="{base}/.well-known/oauth-protected-resource"' in challenge
        prm = (await http.get(f"{base}/.well-known/oauth-protected-resource")).json()
        assert prm["resource"] == base
        assert prm["authorization_servers"] == [base]
        asm = (await http.get(f"{base}/.well-known/oauth-authorization-server")).json()
        assert asm["issuer"] == base
        assert asm["code_challenge_methods_supported"] == ["S256"]
        assert {"authorization_code", "refresh_token"} <= set(asm["grant_types_supported"])
        assert asm["registration_endpoint"] == f"{base}/register"
        assert asm["revocation_endpoint"] == f"{base}/revoke"
        # Bearer API keys keep working, over REST too.
        key = agenthost.tenant("oauth-rest")
        me = await http.post(f"{base}/v1/tools/whoami", json={}, headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["tenant"] == "oauth-rest"


async def test_sdk_oauth_client_full_flow(agenthost: AgentHost) -> None:
    base = agenthost.url
    first = agenthost.tenant("oauth-flow")
    key, key_id = await new_key(agenthost, first, "for an oauth client")
    storage = MemoryStorage()
    redirect_handler, callback_handler = user_agent(base, key)
    provider = OAuthClientProvider(
        server_url=f"{base}/mcp",
        client_metadata=OAuthClientMetadata(redirect_uris=[AnyUrl(REDIRECT)], client_name="e2e"),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=120) as http2:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http2)) as client:
            me = await call(client, "whoami")
            assert (me["tenant"], me["key_id"], me["scope"]) == ("oauth-flow", key_id, "full")
            assert storage.client_info is not None and storage.tokens is not None
            before = storage.tokens
            assert before.access_token != key and before.refresh_token
            # The client believes its access token expired: it refreshes, and the server rotates both tokens.
            provider.context.token_expiry_time = 1.0  # an instant long past (0 would mean "no expiry")
            assert (await call(client, "whoami"))["tenant"] == "oauth-flow"
            after = storage.tokens
            assert after.access_token != before.access_token and after.refresh_token != before.refresh_token

    async with httpx.AsyncClient(timeout=30) as http:
        info = storage.client_info.model_dump(mode="json")
        reused = await token(http, base, info, grant_type="refresh_token", refresh_token=before.refresh_token)
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        assert (await mcp_status(http, base, before.access_token)).status_code == 401

        await revoke(agenthost, first, key_id)
        refused = await mcp_status(http, base, after.access_token)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == (
            f'Bearer error="invalid_token", resource_metadata="{base}/.well-known/oauth-protected-resource"'
        )
        assert refused.json()["error"]["code"] == "unauthorized"
        again = await token(http, base, info, grant_type="refresh_token", refresh_token=after.refresh_token or "")
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # The key was pasted into a form body only: the server's log never names it.
    assert key not in (agenthost.data_dir / "serve.log").read_text()


async def test_revoking_a_token_ends_its_grant(agenthost: AgentHost) -> None:
    base, key = agenthost.url, agenthost.tenant("oauth-revoke")
    async with httpx.AsyncClient(timeout=30) as http:
        client, tokens = await tokens_for(http, base, key)
        assert (await mcp_status(http, base, tokens["access_token"])).status_code == 200
        form = {"client_id": client["client_id"], "client_secret": client["client_secret"]}
        revoked = await http.post(f"{base}/revoke", data={**form, "token": tokens["access_token"]})
        assert revoked.status_code == 200
        assert (await mcp_status(http, base, tokens["access_token"])).status_code == 401
        refresh = await token(http, base, client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
        # The API key itself is untouched.
        assert (await mcp_status(http, base, key)).status_code == 200


async def test_oauth_token_keeps_read_scope_of_its_key(agenthost: AgentHost) -> None:
    base = agenthost.url
    first = agenthost.tenant("oauth-read")
    async with connect(agenthost, first, "http") as client:
        made = await call(client, "create_api_key", {"name": "reader", "scope": "read"})
    async with httpx.AsyncClient(timeout=30) as http:
        _, tokens = await tokens_for(http, base, made["key"])
        assert tokens["scope"] == "read"
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = await http.post(f"{base}/v1/tools/whoami", json={}, headers=headers)
        assert me.status_code == 200 and me.json()["scope"] == "read"
        denied = await http.post(f"{base}/v1/tools/create_api_key", json={"name": "x"}, headers=headers)
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "read_only"


async def test_attack_oauth_code_used_twice(agenthost: AgentHost) -> None:
    base, key = agenthost.url, agenthost.tenant("oauth-replay")
    async with httpx.AsyncClient(timeout=30) as http:
        client = await register(http, base)
        verifier, challenge = pkce()
        code = await code_for(http, base, client, key, challenge)
        first = await exchange(http, base, client, code, verifier)
        assert first.status_code == 200
        second = await exchange(http, base, client, code, verifier)
        assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
        # A replayed code revokes what it was exchanged for (RFC 6749 10.5): it may have been stolen.
        assert (await mcp_status(http, base, first.json()["access_token"])).status_code == 401


async def test_attack_oauth_wrong_pkce_verifier(agenthost: AgentHost) -> None:
    base, key = agenthost.url, agenthost.tenant("oauth-pkce")
    async with httpx.AsyncClient(timeout=30) as http:
        client = await register(http, base)
        verifier, challenge = pkce()
        code = await code_for(http, base, client, key, challenge)
        wrong = await exchange(http, base, client, code, pkce()[0])
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        # The code was spent by the failed attempt: the right verifier cannot redeem it afterwards either.
        late = await exchange(http, base, client, code, verifier)
        assert late.status_code == 400 and late.json()["error"] == "invalid_grant"


async def test_attack_oauth_unregistered_redirect_uri(agenthost: AgentHost) -> None:
    base = agenthost.url
    async with httpx.AsyncClient(timeout=30) as http:
        client = await register(http, base)
        _, challenge = pkce()
        query = {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": "http://127.0.0.1:9/steal",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "s",
        }
        refused = await http.get(f"{base}/authorize", params=query)
        assert refused.status_code == 400 and "location" not in refused.headers
        assert refused.json()["error"] == "invalid_request"
        assert "not registered" in refused.json()["error_description"]
        # Nor may a client ask for a token meant for another server (RFC 8707): it hears invalid_target.
        other = await http.get(f"{base}/authorize", params={**query, "redirect_uri": REDIRECT, "resource": REDIRECT})
        assert other.status_code == 302
        assert parse_qs(urlparse(other.headers["location"]).query)["error"] == ["invalid_target"]


async def test_attack_oauth_token_after_key_revoked(agenthost: AgentHost) -> None:
    base = agenthost.url
    first = agenthost.tenant("oauth-victim")
    key, key_id = await new_key(agenthost, first, "leaked")
    async with httpx.AsyncClient(timeout=30) as http:
        client, tokens = await tokens_for(http, base, key)
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await http.post(f"{base}/v1/tools/whoami", json={}, headers=headers)).status_code == 200
        await revoke(agenthost, first, key_id)
        rest = await http.post(f"{base}/v1/tools/whoami", json={}, headers=headers)
        assert rest.status_code == 401 and rest.json()["error"]["code"] == "unauthorized"
        assert (await mcp_status(http, base, tokens["access_token"])).status_code == 401
        refresh = await token(http, base, client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
        assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
        # Nor can the revoked key consent to a new authorization.
        _, challenge = pkce()
        query = {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": REDIRECT,
            "code_challenge": challenge,
            "state": "s",
        }
        start = await http.get(f"{base}/authorize", params=query)
        page = await http.get(start.headers["location"])
        pending = re.search(r'name="pending" value="([^"]+)"', page.text)
        assert pending is not None
        post = await http.post(str(page.url).split("?")[0], data={"pending": pending.group(1), "api_key": key})
        assert post.status_code == 401 and "location" not in post.headers
        assert "revoked" in post.text


async def test_attack_oauth_consent_without_pending_state(agenthost: AgentHost) -> None:
    base, key = agenthost.url, agenthost.tenant("oauth-csrf")
    async with httpx.AsyncClient(timeout=30) as http:
        missing = await http.post(f"{base}/oauth/consent", data={"api_key": key})
        assert missing.status_code == 400 and "location" not in missing.headers
        forged = await http.post(f"{base}/oauth/consent", data={"pending": secrets.token_urlsafe(32), "api_key": key})
        assert forged.status_code == 400 and "location" not in forged.headers
        assert key not in missing.text and key not in forged.text
        # A live consent, posted from another site's page: refused, and the consent stays unanswered.
        client = await register(http, base)
        query = {"response_type": "code", "client_id": client["client_id"], "code_challenge": pkce()[1], "state": "s"}
        start = await http.get(f"{base}/authorize", params=query)
        page = await http.get(start.headers["location"])
        pending = re.search(r'name="pending" value="([^"]+)"', page.text)
        assert pending is not None
        form = {"pending": pending.group(1), "api_key": key}
        cross = await http.post(f"{base}/oauth/consent", data=form, headers={"Origin": "http://attacker.invalid"})
        assert cross.status_code == 400 and "location" not in cross.headers
        assert (await http.get(start.headers["location"])).status_code == 200
        # The user says no: the client hears access_denied, and the consent is answered for good.
        denied = await http.post(f"{base}/oauth/consent", data={"pending": pending.group(1), "decision": "deny"})
        assert denied.status_code == 302
        answer = parse_qs(urlparse(denied.headers["location"]).query)
        assert answer == {"error": ["access_denied"], "state": ["s"]}
        late = await http.post(f"{base}/oauth/consent", data=form)
        assert late.status_code == 400 and "location" not in late.headers
