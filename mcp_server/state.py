"""What every face (MCP over stdio and HTTP, REST) serves from: the open platform and the rate limiter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.models import Principal
from orchestrator.platform import Platform
from orchestrator.ratelimit import RateLimiter

from .registry import Call
from .toolsets import HEADER, parse_header

__all__ = ["AppState"]


@dataclass
class AppState:
    platform: Platform
    limiter: RateLimiter
    stdio_key: str | None = None  # `agenthost mcp`: checked again on every request, so revoking it bites at once

    def call_for(self, principal: Principal, **kwargs: Any) -> Call:
        kwargs.setdefault("toolsets", frozenset(self.platform.settings.toolsets))
        return Call(platform=self.platform, principal=principal, limiter=self.limiter, **kwargs)

    def toolsets_of(self, request: object) -> frozenset[str]:
        """The toolsets a request asks for (its X-AgentHost-Toolsets header over HTTP), else the server's.

        Raises: InvalidInput for an unknown toolset name.
        """
        headers = getattr(request, "headers", None)
        value = headers.get(HEADER) if headers is not None else None
        return parse_header(value, self.platform.settings.toolsets)
