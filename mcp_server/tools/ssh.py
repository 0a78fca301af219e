"""SSH access to services and sandboxes, through the platform's SSH gateway."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.errors import InvalidInput
from orchestrator.ssh import Kind, SshInfo

from ..registry import Call, tool
from .args import SandboxRef, ServiceRef


def _target(service: str | None, sandbox: str | None) -> tuple[Kind, str]:
    if (service is None) == (sandbox is None):
        raise InvalidInput("SSH needs exactly one target", "pass service or sandbox (not both)")
    return ("service", service) if service is not None else ("sandbox", sandbox or "")


@tool(read_only=True, title="SSH info")
async def ssh_info(call: Call, service: ServiceRef | None = None, sandbox: SandboxRef | None = None) -> SshInfo:
    """How to SSH into a service or sandbox: host, port, user, host key fingerprint, known_hosts line, command."""
    return await call.platform.ssh.info(call.principal, *_target(service, sandbox))


@tool(destructive=True, idempotent=True, title="Add SSH key")
async def add_ssh_key(
    call: Call,
    public_key: Annotated[str, Field(max_length=16384, description="OpenSSH .pub line (or its SHA256 to remove)")],
    service: ServiceRef | None = None,
    sandbox: SandboxRef | None = None,
    remove: bool = False,
) -> SshInfo:
    """Authorize a key (ed25519, ECDSA, RSA>=3072) to SSH into a service's or sandbox's container, or revoke
    it (remove=true: its open sessions end). Never restarts the workload."""
    ssh, (kind, ref) = call.platform.ssh, _target(service, sandbox)
    if remove:
        return await ssh.remove_key(call.principal, kind, ref, public_key)
    return await ssh.add_key(call.principal, kind, ref, public_key)
