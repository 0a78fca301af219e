"""The one tool registry. MCP and REST are both generated from it; no tool exists twice.

A tool is an async function whose first parameter is a ``Call`` (who is calling, the
platform, a progress reporter, the user's answer to a confirmation) and whose other
parameters are typed arguments; it returns a pydantic model. ``run_tool`` is the one gate
every call passes: ``admit`` (read-only mode and key scope, reveal=true, admin-only tools, the
tenant's rate limit), then ``execute`` (the tenant's cap on calls in flight, the confirmation
of a destructive tool, the audit log, and turning unexpected exceptions into a clean error).
REST's Idempotency-Key sits between the two, so a replayed answer is only ever handed to a
call the gate let through.

A tool that deletes or replaces data names its question (``@tool(destructive=True, ask=...)``) and
takes ``confirm``. (Other destructive tools, such as exec or unset_env, do what the caller named and
carry only the annotation: asking the user before every command would teach them to say yes.) The
question is an async
function of the call and the tool's arguments that looks the target up (so a missing one is
``not_found`` before anyone is asked) and returns what would be lost, or None when nothing
needs confirming. A client that can ask its user (MCP elicitation) is asked that question
before the call runs and the user's answer decides (``Call.answer``); only a client that
cannot be asked (REST, MCP clients without elicitation) confirms with ``confirm=true``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from orchestrator.errors import (
    AgentHostError,
    BackendUnavailable,
    Busy,
    ConfirmationRequired,
    Forbidden,
    InvalidInput,
    ReadOnly,
)
from orchestrator.models import Principal
from orchestrator.platform import Platform
from orchestrator.progress import Reporter, silent
from orchestrator.ratelimit import RateLimiter
from orchestrator.settings import TOOLSETS

from .toolsets import toolsets_of

__all__ = [
    "REGISTRY",
    "Call",
    "ToolDef",
    "admit",
    "check_known",
    "execute",
    "invalid_arguments",
    "refusal",
    "run_tool",
    "tool",
]

log = logging.getLogger(__name__)

Question = Callable[..., Awaitable[str | None]]


@dataclass
class Call:
    platform: Platform
    principal: Principal
    report: Reporter = silent
    # The user's answer when the client asked them (MCP elicitation); None when it could not ask.
    answer: bool | None = None
    limiter: RateLimiter | None = None
    toolsets: frozenset[str] = frozenset(TOOLSETS)

    def confirm(self, confirmed: bool, question: str) -> None:
        """Go ahead when the user said yes when asked, or, for a client that cannot ask, on confirm=true.

        Raises: ConfirmationRequired otherwise.
        """
        if self.answer is None:
            if not confirmed:
                raise ConfirmationRequired(question)
        elif not self.answer:
            raise ConfirmationRequired(
                f"the user declined: {question}", "do not call again unless the user asks for it"
            )


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
    open_world: bool = False
    admin_only: bool = False
    title: str | None = None
    secret_answer: bool = False
    ask: Question | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def reveals(self) -> bool:
        """Whether it takes ``reveal``: secrets shown on request (to full-scope keys on a writable server)."""
        return any(p.name == "reveal" for p in self.params)

    def answer_is_secret(self, arguments: dict[str, Any]) -> bool:
        """Whether this call's answer holds a secret (a new key, a revealed value): shown once, never stored."""
        return self.secret_answer or (self.reveals and bool(arguments.get("reveal")))


REGISTRY: dict[str, ToolDef] = {}
F = TypeVar("F", bound=Callable[..., Awaitable[BaseModel]])


def tool(
    *,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
    admin_only: bool = False,
    title: str | None = None,
    secret_answer: bool = False,
    ask: Question | None = None,
) -> Callable[[F], F]:
    """Register a tool. ``open_world``: it reaches beyond the platform (a git remote, a backup target) or
    runs the tenant's commands. ``secret_answer``: its answer holds a secret (a new API key), so it is never
    kept for an Idempotency-Key replay. ``ask``: the question a destructive tool with a ``confirm`` argument
    puts to the user (see the module docstring)."""

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
        if ("confirm" in fields) != (ask is not None) or (ask is not None and not destructive):
            raise TypeError(f"tool {fn.__name__}: a tool that takes confirm is destructive and says what it asks")
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
            open_world=open_world,
            admin_only=admin_only,
            title=title,
            secret_answer=secret_answer,
            ask=ask,
        )
        return fn

    return register


def invalid_arguments(tool_name: str, exc: ValidationError) -> InvalidInput:
    """One wording for argument errors, over MCP and REST alike."""
    details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
    return InvalidInput(f"invalid arguments for {tool_name}: {details}", "fix the named arguments and call again")


def check_known(td: ToolDef, arguments: Mapping[str, Any]) -> None:
    """Refuse arguments the tool does not take, whatever the client made of the schema: a misspelt optional
    argument would otherwise be dropped and the call run without it.

    Raises: InvalidInput naming the unknown arguments and the known ones.
    """
    known = [p.name for p in td.params]
    unknown = sorted(set(arguments) - set(known))
    if not unknown:
        return
    takes = f"it takes {', '.join(known)}" if known else "it takes no arguments"
    raise InvalidInput(
        f"unknown argument{'s' if len(unknown) > 1 else ''} for {td.name}: {', '.join(map(repr, unknown))}; {takes}",
        "remove the unknown arguments or fix their spelling, then call again",
    )


def _target(arguments: dict[str, Any]) -> str | None:
    for key in ("service", "database", "sandbox", "build_id", "backup_id", "name", "key_id"):
        if isinstance(arguments.get(key), str):
            return str(arguments[key])
    return None


def refusal(td: ToolDef, principal: Principal, server_read_only: bool, toolsets: frozenset[str]) -> Forbidden | None:
    """Why this caller may not call this tool at all (and so does not see it listed), or None."""
    which = "server" if server_read_only else "key"
    if not td.read_only and (server_read_only or principal.scope == "read"):
        return ReadOnly(f"{td.name} changes things, and this {which} is read-only")
    if td.admin_only and not principal.is_admin:
        return Forbidden(f"{td.name} is for admins only")
    groups = toolsets_of(td.name)
    if groups and not groups & toolsets:  # a tool in no toolset is in every choice (toolsets.ALWAYS)
        return Forbidden(
            f"{td.name} is in toolset {'/'.join(sorted(groups))}, which this session did not ask for",
            "name it in the X-AgentHost-Toolsets header (HTTP) or AGENTHOST_TOOLSETS (`agenthost mcp`)",
        )
    return None


def admit(td: ToolDef, call: Call, arguments: dict[str, Any]) -> None:
    """The checks every call passes before it runs or gets a replayed answer; takes a rate-limit token.

    Raises: ReadOnly, Forbidden, RateLimited.
    """
    p = call.principal
    server_read_only = call.platform.settings.read_only
    which = "server" if server_read_only else "key"
    refused = refusal(td, p, server_read_only, call.toolsets)
    if refused is not None:
        raise refused
    if td.reveals and arguments.get("reveal") and (server_read_only or p.scope != "full"):
        raise ReadOnly(
            f"{td.name} with reveal=true shows secrets, and this {which} is read-only",
            "call it without reveal: the values stay masked"
            + ("" if server_read_only else "; revealing them needs a key with full scope"),
        )
    if call.limiter is not None:
        call.limiter.check(p.tenant_id)


async def execute(td: ToolDef, call: Call, arguments: dict[str, Any]) -> BaseModel:
    """Run one admitted call; mutations and revealed secrets go to the audit log. Raises: AgentHostError."""
    p = call.principal
    audited = not td.read_only or td.answer_is_secret(arguments)
    audit = call.platform.store.scoped(p.tenant_id).audit
    try:
        with call.platform.tenant_call(p.tenant_id):
            if td.ask is not None and (question := await td.ask(call, **arguments)) is not None:
                call.confirm(bool(arguments.get("confirm")), question)
            try:
                result = await td.fn(call, **arguments)
            finally:
                if not td.read_only:  # it may have made or removed volumes or build logs: whoami counts afresh
                    call.platform.status.forget_usage(p.tenant_id)
    except Busy:
        raise  # refused before it ran, like a rate limit: nothing to audit
    except ValidationError as exc:
        # A request model the tool builds from its arguments holds rules the schema does not state (a
        # pattern, a rule across fields): a bad argument, unless the model was not built from arguments.
        if not {str(e["loc"][0]) for e in exc.errors() if e["loc"]} <= {p.name for p in td.params}:
            log.exception("tool %s crashed", td.name)
            raise AgentHostError(f"{td.name} failed unexpectedly (ValidationError)") from exc
        refused = invalid_arguments(td.name, exc)
        if audited:
            await audit.record(p.key_id, td.name, _target(arguments), refused.code, refused.message[:500])
        raise refused from exc
    except AgentHostError as exc:
        if isinstance(exc, BackendUnavailable):
            call.platform.status.forget_engine_facts()  # so platform_status, asked next, says the engine is away
        if audited and not isinstance(exc, ConfirmationRequired):
            await audit.record(p.key_id, td.name, _target(arguments), exc.code, exc.message[:500])
        raise
    except Exception as exc:
        log.exception("tool %s crashed", td.name)
        if audited:
            await audit.record(p.key_id, td.name, _target(arguments), "internal", type(exc).__name__)
        raise AgentHostError(f"{td.name} failed unexpectedly ({type(exc).__name__})") from exc
    if audited:
        await audit.record(p.key_id, td.name, _target(arguments), "ok")
    return result


async def run_tool(td: ToolDef, call: Call, arguments: dict[str, Any]) -> BaseModel:
    """Admit and run one validated call. Raises: AgentHostError (and only that)."""
    admit(td, call, arguments)
    return await execute(td, call, arguments)
