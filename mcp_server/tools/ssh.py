"""SSH access to services."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.ssh import SshInfo

from ..registry import Call, tool
from .args import ServiceRef, Wait

PublicKey = Annotated[str, Field(min_length=1, max_length=16384, description="one OpenSSH public key line (.pub)")]


@tool(read_only=True, title="SSH info")
async def ssh_info(call: Call, service: ServiceRef) -> SshInfo:
    """How to SSH into a service: host, port, user, host key fingerprint (verify it), a known_hosts line and a
    ready ssh command. Sessions see the service's volumes and reach it on localhost."""
    return await call.platform.ssh.info(call.principal, service)


@tool(idempotent=True, title="Add SSH key")
async def add_ssh_key(call: Call, service: ServiceRef, public_key: PublicKey, wait: Wait = True) -> SshInfo:
    """Authorize a public key (ed25519, ECDSA or RSA >= 3072 bits) to SSH into a service as user 'app'
    (key-only, no root). The first key recreates the service's container to publish the SSH port."""
    return await call.platform.ssh.add_key(call.principal, service, public_key, wait, call.report)


@tool(idempotent=True, title="Remove SSH key")
async def remove_ssh_key(
    call: Call,
    service: ServiceRef,
    key: Annotated[str, Field(min_length=1, max_length=16384, description="SHA256 fingerprint or the public key")],
    wait: Wait = True,
) -> SshInfo:
    """Revoke a key at once (its open sessions end). Removing the last key closes SSH access and recreates the
    service's container without the SSH port."""
    return await call.platform.ssh.remove_key(call.principal, service, key, wait, call.report)
