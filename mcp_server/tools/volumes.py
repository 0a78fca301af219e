"""Volumes: a tenant's named volumes, which services mount and keep_volumes keeps."""

from __future__ import annotations

from typing import Any

from orchestrator.models import Deleted
from orchestrator.services import VolumeList

from ..registry import Call, tool
from .args import Confirm, VolumeRef


@tool(read_only=True, title="List volumes")
async def list_volumes(call: Call) -> VolumeList:
    """Your volumes (kept ones too), the services that mount them, and your max_volumes quota."""
    return await call.platform.volumes.list(call.principal)


async def _ask_delete(call: Call, volume: str, **_: Any) -> str:
    v = await call.platform.volumes.get(call.principal, volume)
    return f"Delete volume {v.name!r} and every file on it? This cannot be undone."


@tool(destructive=True, idempotent=True, title="Delete volume", ask=_ask_delete)
async def delete_volume(call: Call, volume: VolumeRef, confirm: Confirm = False) -> Deleted:
    """Delete a volume and its files; refused (conflict) while a service mounts it."""
    return await call.platform.volumes.delete(call.principal, volume)
