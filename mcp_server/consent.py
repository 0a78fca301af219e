"""The OAuth consent page: the user pastes an API key to let a client act with that key's tenant and scope.

The form's only state is the pending authorization's id, unguessable, single-use and short-lived: a POST
without a live one is refused, so no other site can complete a consent. The key travels only in the POST
body; it is never put in a URL, a log line or the page sent back. The page may not be framed."""

from __future__ import annotations

import html
from collections.abc import Callable
from urllib.parse import urlparse

from mcp.server.auth.provider import construct_redirect_uri
from mcp.shared.auth import OAuthClientInformationFull
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator.errors import AgentHostError, InvalidInput, Unauthorized
from orchestrator.oauth import OAuthGrants, PendingConsent

__all__ = ["CONSENT_PATH", "consent_routes"]

CONSENT_PATH = "/oauth/consent"

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agenthost: authorize {client}</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}}
input[type=password]{{width:100%;padding:.4em}}.error{{color:#a00}}</style></head>
<body><h1>Authorize {client}</h1>{body}</body></html>"""

_FORM = """<p><b>{client}</b> asks to use agenthost on your behalf, with the tenant and scope of the API key
you paste below{scope}. It will be sent back to <code>{redirect}</code>.</p>
{error}<form method="post" action="{action}">
<input type="hidden" name="pending" value="{pending}">
<p><label for="api_key">API key</label><br>
<input type="password" id="api_key" name="api_key" autocomplete="off" required></p>
<p><button type="submit" name="decision" value="approve">Authorize</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button></p></form>"""


def _page(client: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(client=html.escape(client), body=body), status_code=status, headers=_HEADERS)


def _failure(exc: AgentHostError) -> HTMLResponse:
    body = f'<p class="error">{html.escape(exc.message)}</p><p>{html.escape(exc.hint)}</p>'
    return _page("a client", body, exc.status)


def consent_routes(grants: Callable[[], OAuthGrants], issuer: str) -> list[Route]:
    origin = "{0.scheme}://{0.netloc}".format(urlparse(issuer))

    async def client_name(client_id: str) -> str:
        info = await grants().client(client_id)
        client = OAuthClientInformationFull.model_validate_json(info) if info else None
        return (client.client_name if client else None) or client_id

    async def form(pending_id: str, pending: PendingConsent, error: str = "", status: int = 200) -> HTMLResponse:
        name = await client_name(pending.client_id)
        scopes = pending.request.scopes
        body = _FORM.format(
            client=html.escape(name),
            scope=" (read only)" if scopes and "full" not in scopes else "",
            redirect=html.escape(pending.request.redirect_uri),
            error=f'<p class="error">{html.escape(error)}</p>' if error else "",
            action=CONSENT_PATH,
            pending=html.escape(pending_id, quote=True),
        )
        return _page(name, body, status)

    async def show(request: Request) -> Response:
        pending_id = request.query_params.get("pending", "")
        pending = await grants().pending(pending_id)
        if pending is None:
            return _failure(_unknown())
        return await form(pending_id, pending)

    async def answer(request: Request) -> Response:
        # A browser says where a POST comes from; one from another site is refused outright.
        if request.headers.get("origin", origin) != origin:
            return _failure(InvalidInput("this form was posted from another site", "use the page agenthost showed you"))
        data = await request.form()
        pending_id, api_key = data.get("pending"), data.get("api_key")
        if not isinstance(pending_id, str) or not pending_id:
            return _failure(_unknown())
        if data.get("decision") == "deny":
            denied = await grants().deny(pending_id)
            if denied is None:
                return _failure(_unknown())
            return _redirect(construct_redirect_uri(denied.redirect_uri, error="access_denied", state=denied.state))
        try:
            auth, code = await grants().approve(pending_id, api_key if isinstance(api_key, str) else "")
        except Unauthorized as exc:
            pending = await grants().pending(pending_id)
            return await form(pending_id, pending, exc.message, exc.status) if pending else _failure(_unknown())
        except AgentHostError as exc:
            return _failure(exc)
        return _redirect(construct_redirect_uri(auth.redirect_uri, code=code, state=auth.state))

    return [Route(CONSENT_PATH, show, methods=["GET"]), Route(CONSENT_PATH, answer, methods=["POST"])]


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(
        url, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def _unknown() -> InvalidInput:
    return InvalidInput(
        "this authorization request is unknown, expired or already answered",
        "start the authorization again from your MCP client",
    )
