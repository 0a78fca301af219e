"""Backups: restic snapshots of databases and service volumes, and restores from them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from orchestrator.backups import Backup, BackupList
from orchestrator.models import BackupTarget, Deleted, ResourceName

from ..registry import Call, tool
from .args import BackupRef, Confirm, DatabaseRef, VolumeRef, Wait


@tool(open_world=True, title="Create backup")
async def create_backup(
    call: Call,
    database: DatabaseRef | None = None,
    volume: VolumeRef | None = None,
    target: BackupTarget | None = None,
    wait: Wait = True,
) -> Backup:
    """Back up a database (live, consistent) or a volume (its services stop briefly). Past the wait,
    poll list_backups."""
    await call.platform.status.check_disk()
    return await call.platform.backups.create(call.principal, database, volume, target, wait, call.report)


@tool(read_only=True, title="List backups")
async def list_backups(call: Call, database: DatabaseRef | None = None, volume: VolumeRef | None = None) -> BackupList:
    """Your backups, newest first, with their last restore; optionally of one database or volume."""
    return BackupList(backups=await call.platform.backups.list_backups(call.principal, database, volume))


async def _ask_restore(call: Call, backup_id: str, name: str | None = None, **_: Any) -> str | None:
    return await call.platform.backups.describe_restore(call.principal, backup_id, name)


@tool(destructive=True, open_world=True, title="Restore backup", ask=_ask_restore)
async def restore_backup(
    call: Call,
    backup_id: BackupRef,
    name: Annotated[ResourceName | None, Field(description="restore into a new database/volume")] = None,
    confirm: Confirm = False,
    wait: Wait = True,
) -> Backup:
    """Replace a database's or volume's data with a backup (or fill a new one: name). Outcome in last_restore."""
    if name is not None:
        await call.platform.status.check_disk()
    return await call.platform.backups.restore(call.principal, backup_id, name, wait, call.report)


async def _ask_delete(call: Call, backup_id: str, **_: Any) -> str:
    return await call.platform.backups.describe_delete(call.principal, backup_id)


@tool(destructive=True, idempotent=True, open_world=True, title="Delete backup", ask=_ask_delete)
async def delete_backup(call: Call, backup_id: BackupRef, confirm: Confirm = False) -> Deleted:
    """Delete a backup and its snapshot."""
    return await call.platform.backups.delete(call.principal, backup_id)
