"""Exec: run a command in a service's container or in a sandbox.

The command is an argv, or a shell string run by ``/bin/sh -c``. It gets a deadline (default 60 s,
at most 600), optional stdin, env and workdir. stdout and stderr each keep at most
``exec_max_output_bytes`` (64 KiB by default: the head and the tail around a marker when cut), and
output streams to the caller as progress notifications while the command runs. At the deadline the
command and every process it started are killed inside the container; the result says ``timed_out``.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from .backends.base import Backend, ExecSpec
from .errors import InvalidInput, NotFound
from .fairness import TenantSlots
from .models import Principal, untrusted
from .progress import Reporter, silent
from .sandboxes import SandboxManager
from .secrets import mask_secrets
from .services import ServiceManager
from .services.requests import check_env
from .settings import Settings
from .store import Store

__all__ = ["ExecManager", "ExecOutput", "ExecRequest"]


class ExecRequest(BaseModel):
    service: str | None = None
    sandbox: str | None = None
    command: list[str] | str
    timeout_s: float | None = Field(None, gt=0)
    stdin: str | None = None
    env: dict[str, str] = {}
    workdir: str | None = None


class ExecOutput(BaseModel):
    target: str
    exit_code: int | None = Field(description="null when it timed out")
    stdout: str = Field(description="untrusted workload output, known secrets masked")
    stderr: str
    truncated: bool = Field(description="output went past output_limit_bytes: head and tail kept")
    timed_out: bool
    duration_ms: int
    output_limit_bytes: int
    note: str | None = None


def _argv(command: list[str] | str) -> list[str]:
    if isinstance(command, str):
        if not command.strip():
            raise InvalidInput("command is empty", "pass an argv list or a shell string")
        return ["/bin/sh", "-c", command]
    if not command or not command[0]:
        raise InvalidInput("command is empty", "pass an argv list like ['ls', '-l'] or a shell string")
    return command


def _check(req: ExecRequest, settings: Settings) -> tuple[list[str], float, bytes | None]:
    if (req.service is None) == (req.sandbox is None):
        raise InvalidInput("exec needs exactly one target", "pass service or sandbox (not both)")
    argv = _argv(req.command)
    if any("\x00" in a for a in argv) or sum(len(a) for a in argv) > 128 * 1024:
        raise InvalidInput("command holds a NUL byte or is larger than 128 KiB", "write big scripts to a file first")
    timeout = req.timeout_s or settings.exec_default_timeout_s
    if timeout > settings.exec_max_timeout_s:
        raise InvalidInput(
            f"timeout_s {timeout:g} is above the maximum of {settings.exec_max_timeout_s:g}",
            "run long jobs in the background (nohup ... &) and poll them with short execs",
        )
    try:
        stdin = req.stdin.encode() if req.stdin is not None else None
    except UnicodeEncodeError as exc:
        raise InvalidInput("stdin holds a lone surrogate, which is no text", "send UTF-8 text") from exc
    if stdin is not None and len(stdin) > settings.exec_max_stdin_bytes:
        raise InvalidInput(f"stdin is larger than {settings.exec_max_stdin_bytes} bytes", "copy big inputs to a volume")
    check_env(req.env)
    if req.workdir is not None and (not req.workdir.startswith("/") or "\x00" in req.workdir):
        raise InvalidInput(f"workdir {req.workdir!r} is not an absolute path", "e.g. /app or /workspace")
    return argv, timeout, stdin


class ExecManager:
    def __init__(
        self, settings: Settings, store: Store, backend: Backend, services: ServiceManager, sandboxes: SandboxManager
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.services = services
        self.sandboxes = sandboxes
        self.running = TenantSlots(
            "execs",
            "tenant_max_concurrent_execs",
            settings.tenant_max_concurrent_execs,
            "; run long jobs in the background (nohup ... &) and poll them with short execs",
        )

    async def run(self, p: Principal, req: ExecRequest, report: Reporter = silent) -> ExecOutput:
        """Raises: InvalidInput, NotFound, Busy when the tenant runs tenant_max_concurrent_execs already."""
        argv, timeout, stdin = _check(req, self.settings)
        with self.running.hold(p.tenant_id):
            return await self._run(p, req, argv, timeout, stdin, report)

    async def _run(
        self, p: Principal, req: ExecRequest, argv: list[str], timeout: float, stdin: bytes | None, report: Reporter
    ) -> ExecOutput:
        ts = self.store.scoped(p.tenant_id)
        secrets: list[str] = []
        if req.service is not None:
            svc = await ts.services.get(req.service)
            # While a backup or restore holds one of its volumes, nothing of the tenant may run on it.
            await ts.backups.check_free("volume", [v.name for v in svc.spec.volumes])
            workload, target, hint = svc.id, f"service {svc.name}", "start_service first"
            secrets += list((await ts.env.get_all(svc.id)).values())
            secrets += await self.services.linked_secrets(ts, svc)
        else:
            sbx = await ts.sandboxes.get(req.sandbox or "")
            if sbx.status != "running":
                raise InvalidInput(f"sandbox {sbx.name} is {sbx.status}", "wait for it, or create_sandbox a new one")
            workload, target, hint = sbx.id, f"sandbox {sbx.name}", "create_sandbox a new one"
        started = time.monotonic()

        async def stream(name: str, text: str) -> None:
            await report(untrusted(f"[{name}] {mask_secrets(text, secrets)}"), time.monotonic() - started, timeout)

        limit = self.settings.exec_max_output_bytes
        try:
            spec = ExecSpec(argv, timeout, stdin, req.env or None, req.workdir, limit, on_output=stream)
            result = await self.backend.exec(workload, spec)
        except (InvalidInput, NotFound) as exc:
            if (await self.backend.workload_status(workload)).state != "running":
                raise InvalidInput(f"{target} is not running", hint) from exc
            raise

        def shown(text: str) -> str:
            return untrusted(mask_secrets(text, secrets)) if text else ""

        notes = []
        if result.timed_out:
            notes.append(f"timed out after {timeout:g} s: the command and every process it started were killed")
        elif result.exit_code is None:
            notes.append(
                f"the command ended without an exit status: the session was lost (the {target} stopped or restarted"
                " meanwhile, or the engine dropped it); get_service shows its state"
            )
        elif result.exit_code == 137:
            # What the engine reports instead of a lost session when it saw the command die with its workload.
            notes.append(
                f"exit 137: the command was killed with SIGKILL (out of memory, or the {target} stopped or restarted"
                " meanwhile); get_service shows its state"
            )
        if result.exit_code == 127 and result.stderr.startswith("agenthost: command not found"):
            notes.append("command not found in the container's PATH")
        if result.truncated:
            notes.append(f"output past {limit} bytes per stream was cut in the middle (head and tail kept)")
        return ExecOutput(
            target=target,
            exit_code=result.exit_code,
            stdout=shown(result.stdout),
            stderr=shown(result.stderr),
            truncated=result.truncated,
            timed_out=result.timed_out,
            duration_ms=result.duration_ms,
            output_limit_bytes=limit,
            note="; ".join(notes) or None,
        )
