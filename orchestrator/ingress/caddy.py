"""Caddy's admin API over its unix socket: read the running configuration, load a new one whole.

The socket lives in the data dir (root only, never mounted into a workload), and requests carry the one
Host header the configuration allows (``ADMIN_ORIGIN``). httpx errors are translated here, at the edge,
into ``IngressUnavailable``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from ..errors import IngressUnavailable
from .config import ADMIN_ORIGIN

__all__ = ["CaddyAdmin"]

_HINT = "start Caddy with `agenthost ingress run` (infra/run.sh does); `agenthost doctor` checks it"


class CaddyAdmin:
    def __init__(self, socket: Path, timeout_s: float = 10.0) -> None:
        self.socket = socket
        self.timeout_s = timeout_s

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        if not self.socket.exists():
            raise IngressUnavailable(f"Caddy's admin socket {self.socket} does not exist", _HINT)
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket))
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url=f"http://{ADMIN_ORIGIN}", timeout=self.timeout_s
            ) as client:
                response = await client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise IngressUnavailable(f"Caddy's admin API at {self.socket} did not answer: {exc}", _HINT) from exc
        if response.status_code >= 400:
            raise IngressUnavailable(
                f"Caddy refused {method} {path} ({response.status_code}): {response.text[:500]}",
                "check Caddy's log; the configuration agenthost renders is in orchestrator/ingress/config.py",
            )
        return response

    async def config(self) -> dict[str, Any] | None:
        """The configuration Caddy runs (None when it has none). Raises: IngressUnavailable."""
        loaded = json.loads((await self._request("GET", "/config/")).text or "null")
        return loaded if isinstance(loaded, dict) else None

    async def load(self, config: dict[str, Any]) -> None:
        """Replace Caddy's whole configuration. Raises: IngressUnavailable, also when Caddy refuses it."""
        await self._request("POST", "/load", config)
