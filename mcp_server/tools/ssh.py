"""SSH access to services, through the platform's SSH gateway."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.ssh import SshInfo

from ..registry import Call, tool
from .args import ServiceRef


@tool(read_only=True, title="SSH info")
async def ssh_info(call: Call, service: ServiceRef) -> SshInfo:
    """How to SSH into a service: host, port, user, host key fingerprint, known_hosts line, ssh command."""
    return await call.platform.ssh.info(call.principal, service)


@tool(destructive=True, idempotent=True, title="Add SSH key")
async def add_ssh_key(
    call: Call,
    service: ServiceRef,
    public_key: Annotated[str, Field(max_length=16384, description="OpenSSH .pub line (or its SHA256 to remove)")],
    remove: bool = False,
) -> SshInfo:
    """Authorize a key (ed25519, ECDSA, RSA>=3072) to SSH into the service's container, or revoke it
    (remove=true: its open sessions end). Never restarts the service."""
    ssh = call.platform.ssh
    if remove:
        return await ssh.remove_key(call.principal, service, public_key)
    return await ssh.add_key(call.principal, service, public_key)
