"""`agenthost serve` with timers, for bench/exec_server.py: what each layer of the server takes per call.

Run as `python bench/timed_serve.py serve --port N` with SPANS_OUT naming a file. In every HTTP request the
tool call (registry.run_tool), the backend's exec, the audit row and the store reads an exec makes are timed
(summed per request), and so are the steps before the tool: the time until bearer auth let the request
through, the body read and routing, the SDK's handling up to the tool's lookup, and the arguments' validation.
At exit (SIGTERM) the spans go to SPANS_OUT as JSON, ``{label: [seconds, ...]}``, one entry per request in the
order they ran, each label prefixed with the request's mcp-name header (or its x-bench-label header when it
sends one), as in "exec: audit row".
"""

from __future__ import annotations

import contextvars
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mcp_server import app as app_module
from mcp_server import cli, handlers
from mcp_server.limits import BodyLimit
from mcp_server.sessions import SessionGate
from orchestrator.backends.docker.backend import DockerBackend
from orchestrator.databases.links import DatabaseLinks
from orchestrator.exec import ExecManager
from orchestrator.store.audit import AuditRepo
from orchestrator.store.env import EnvRepo
from orchestrator.store.services import ServiceRepo

SPANS: dict[str, list[float]] = {}


@dataclass
class Request:
    started: float
    spans: dict[str, float] = field(default_factory=dict)
    reached: dict[str, float] = field(default_factory=dict)  # step -> when the request got past it
    tool: tuple[float, float] | None = None
    answered: float | None = None

    def finish(self, ended: float) -> dict[str, float]:
        out = {**self.spans, "server": ended - self.started}
        if self.tool is not None:
            tool_start, tool_end = self.tool
            out["before the tool"] = tool_start - self.started
            last = self.started
            for step, at in sorted(
                {**self.reached, "the call's context (principal, toolsets)": tool_start}.items(), key=lambda s: s[1]
            ):
                out[f"step: {step}"] = at - last
                last = at
            out["after the tool, to the answer's start"] = (self.answered or ended) - tool_end
            out["the answer's sending"] = ended - (self.answered or ended)
        return out


REQUEST: contextvars.ContextVar[Request | None] = contextvars.ContextVar("request", default=None)


def timed(owner: Any, attr: str, label: str) -> None:
    fn: Callable[..., Awaitable[Any]] = getattr(owner, attr)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            ended = time.perf_counter()
            if (request := REQUEST.get()) is not None:
                request.spans[label] = request.spans.get(label, 0.0) + ended - started
                if label == "tool":
                    request.tool = (started, ended)

    setattr(owner, attr, wrapper)


def reached(owner: Any, attr: str, step: str) -> None:
    """The first call of ``owner.attr`` in a request ends ``step`` (the steps before it, since the last)."""
    fn: Callable[..., Awaitable[Any]] = getattr(owner, attr)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if (request := REQUEST.get()) is not None:
            request.reached.setdefault(step, time.perf_counter())
        return await fn(*args, **kwargs)

    setattr(owner, attr, wrapper)


def timed_app(build: Callable[..., Any]) -> Callable[..., Any]:
    def build_timed(*args: Any, **kwargs: Any) -> Any:
        app = build(*args, **kwargs)

        async def outermost(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            call = (headers.get(b"x-bench-label") or headers.get(b"mcp-name") or b"?").decode()
            request = Request(time.perf_counter())
            REQUEST.set(request)

            async def timed_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    request.answered = time.perf_counter()
                await send(message)

            try:
                await app(scope, receive, timed_send)
            finally:
                for label, seconds in request.finish(time.perf_counter()).items():
                    SPANS.setdefault(f"{call}: {label}", []).append(seconds)

        return outermost

    return build_timed


def instrument() -> None:
    timed(handlers, "run_tool", "tool")  # handlers calls it by this module-level name
    timed(DockerBackend, "exec", "backend exec")
    timed(ExecManager, "run", "exec use-case")
    timed(AuditRepo, "record", "audit row")
    for owner, attr in ((ServiceRepo, "get"), (EnvRepo, "get_all"), (DatabaseLinks, "secrets")):
        timed(owner, attr, "store reads")
    reached(BodyLimit, "__call__", "bearer auth")
    reached(SessionGate, "__call__", "body read, routing")
    reached(app_module.AgentHostMCP, "call_tool", "the SDK's request handling")
    reached(handlers, "call_from_ctx", "argument validation")
    app_module.build_http_app = timed_app(app_module.build_http_app)  # type: ignore[assignment]


def dump(*_: object) -> None:
    with open(os.environ["SPANS_OUT"], "w") as out:
        json.dump(SPANS, out)
    sys.exit(0)


if __name__ == "__main__":
    instrument()
    # uvicorn stops on SIGTERM, then puts back the handler it found and raises the signal again.
    signal.signal(signal.SIGTERM, dump)
    sys.exit(cli.main(sys.argv[1:]))
