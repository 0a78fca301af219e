"""Backups: restic snapshots of databases and service volumes, and restores from them."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from orchestrator.models import Backup, BackupList, BackupTarget, Deleted, ResourceName

from ..registry import Call, tool
from .args import BackupRef, Confirm, DatabaseRef, VolumeRef, Wait


@tool(title="Create backup")
async def create_backup(
    call: Call,
    database: DatabaseRef | None = None,
    volume: VolumeRef | None = None,
    target: BackupTarget | None = None,
    wait: Wait = True,
) -> Backup:
    """Back up a database (live, consistent) or a volume (its services stop briefly). Past the wait,
    poll list_backups."""
    await call.platform.check_disk()
    return await call.platform.backups.create(call.principal, database, volume, target, wait, call.report)


@tool(read_only=True, title="List backups")
async def list_backups(call: Call, database: DatabaseRef | None = None, volume: VolumeRef | None = None) -> BackupList:
    """Your backups, newest first, with their last restore; optionally of one database or volume."""
    return BackupList(backups=await call.platform.backups.list_backups(call.principal, database, volume))


@tool(destructive=True, title="Restore backup")
async def restore_backup(
    call: Call,
    backup_id: BackupRef,
    name: Annotated[ResourceName | None, Field(description="restore into a new database/volume")] = None,
    confirm: Confirm = False,
    wait: Wait = True,
) -> Backup:
    """Replace a database's or volume's data with a backup (or fill a new one: name). Outcome in last_restore."""
    backups = call.platform.backups
    if name is None:
        await call.confirm(confirm, await backups.describe_restore(call.principal, backup_id, name))
    else:
        await call.platform.check_disk()
    return await backups.restore(call.principal, backup_id, name, wait, call.report)


@tool(destructive=True, title="Delete backup")
async def delete_backup(call: Call, backup_id: BackupRef, confirm: Confirm = False) -> Deleted:
    """Delete a backup and its snapshot."""
    backups = call.platform.backups
    await call.confirm(confirm, await backups.describe_delete(call.principal, backup_id))
    return await backups.delete(call.principal, backup_id)
