"""The one tool registry. MCP and REST are both generated from it; no tool exists twice.

A tool is an async function whose first parameter is a ``Call`` (who is calling, the
platform, a progress reporter, a confirmation prompt) and whose other parameters are
typed arguments; it returns a pydantic model. ``run_tool`` is the one gate every call
passes: read-only mode and key scope, admin-only tools, the tenant's rate limit, the
audit log, and turning unexpected exceptions into a clean error.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from orchestrator.errors import AgentHostError, ConfirmationRequired, Forbidden, InvalidInput, ReadOnly
from orchestrator.models import Principal
from orchestrator.platform import Platform
from orchestrator.progress import Reporter
from orchestrator.ratelimit import RateLimiter

__all__ = ["REGISTRY", "Call", "ToolDef", "invalid_arguments", "run_tool", "tool"]

log = logging.getLogger(__name__)

Confirmer = Callable[[str], Awaitable[bool]]


async def _no_report(message: str, progress: float | None = None, total: float | None = None) -> None:
    return None


async def _cannot_ask(message: str) -> bool:
    return False


@dataclass
class Call:
    platform: Platform
    principal: Principal
    report: Reporter = _no_report
    ask: Confirmer = _cannot_ask
    limiter: RateLimiter | None = None

    async def confirm(self, confirmed: bool, message: str) -> None:
        """Go ahead when the caller passed confirm=true or the user accepts when asked.

        Raises: ConfirmationRequired otherwise.
        """
        if confirmed or await self.ask(message):
            return
        raise ConfirmationRequired(message)


@dataclass(frozen=True)
class ToolDef:
    name: str
    fn: Callable[..., Awaitable[BaseModel]]
    description: str
    params: list[inspect.Parameter]
    args_model: type[BaseModel]
    output_model: type[BaseModel]
    read_only: bool
    destructive: bool
    idempotent: bool
    admin_only: bool = False
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


REGISTRY: dict[str, ToolDef] = {}
F = TypeVar("F", bound=Callable[..., Awaitable[BaseModel]])


def tool(
    *,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    admin_only: bool = False,
    title: str | None = None,
) -> Callable[[F], F]:
    def register(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params = list(sig.parameters.values())[1:]
        fields: dict[str, Any] = {
            p.name: (p.annotation, ... if p.default is inspect.Parameter.empty else p.default) for p in params
        }
        args_model = create_model(f"{fn.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields)
        output = sig.return_annotation
        if not (inspect.isclass(output) and issubclass(output, BaseModel)):
            raise TypeError(f"tool {fn.__name__} must return a pydantic model")
        if fn.__name__ in REGISTRY:
            raise ValueError(f"tool {fn.__name__} registered twice")
        REGISTRY[fn.__name__] = ToolDef(
            name=fn.__name__,
            fn=fn,
            description=inspect.cleandoc(fn.__doc__ or ""),
            params=params,
            args_model=args_model,
            output_model=output,
            read_only=read_only,
            destructive=destructive,
            idempotent=idempotent or read_only,
            admin_only=admin_only,
            title=title,
        )
        return fn

    return register


def invalid_arguments(tool_name: str, exc: ValidationError) -> InvalidInput:
    """One wording for argument errors, over MCP and REST alike."""
    details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
    return InvalidInput(f"invalid arguments for {tool_name}: {details}", "fix the named arguments and call again")


def _target(arguments: dict[str, Any]) -> str | None:
    for key in ("service", "database", "sandbox", "build_id", "backup_id", "name", "key_id"):
        if isinstance(arguments.get(key), str):
            return str(arguments[key])
    return None


async def run_tool(td: ToolDef, call: Call, arguments: dict[str, Any]) -> BaseModel:
    """Run one validated call. Raises: AgentHostError (and only that)."""
    p = call.principal
    if not td.read_only and (call.platform.settings.read_only or p.scope == "read"):
        raise ReadOnly(
            f"{td.name} changes things, and this {'server' if call.platform.settings.read_only else 'key'} is read-only"
        )
    if td.admin_only and not p.is_admin:
        raise Forbidden(f"{td.name} is for admins only")
    if call.limiter is not None:
        call.limiter.check(p.tenant_id)
    audit = call.platform.store.scoped(p.tenant_id).audit
    try:
        result = await td.fn(call, **arguments)
    except AgentHostError as exc:
        if not td.read_only and not isinstance(exc, ConfirmationRequired):
            await audit.record(p.key_id, td.name, _target(arguments), exc.code, exc.message[:500])
        raise
    except Exception as exc:
        log.exception("tool %s crashed", td.name)
        if not td.read_only:
            await audit.record(p.key_id, td.name, _target(arguments), "internal", type(exc).__name__)
        raise AgentHostError(f"{td.name} failed unexpectedly ({type(exc).__name__})") from exc
    if not td.read_only:
        await audit.record(p.key_id, td.name, _target(arguments), "ok")
    return result
