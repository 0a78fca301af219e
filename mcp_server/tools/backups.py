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
    target: Annotated[
        BackupTarget | None, Field(description="'local' or 's3'; default: the platform's setting")
    ] = None,
    wait: Wait = True,
) -> Backup:
    """Back up a database (Postgres: pg_dump while it runs; Redis: a BGSAVE snapshot) or a service volume (its
    files; services using it stop briefly for a consistent copy) into your restic repository. Pass database or
    volume. Past the bounded wait it returns status running: poll get_backup."""
    await call.platform.check_disk()
    return await call.platform.backups.create(call.principal, database, volume, target, wait, call.report)


@tool(read_only=True, title="List backups")
async def list_backups(call: Call, database: DatabaseRef | None = None, volume: VolumeRef | None = None) -> BackupList:
    """Your backups, newest first, optionally only those of one database or volume."""
    return BackupList(backups=await call.platform.backups.list_backups(call.principal, database, volume))


@tool(read_only=True, title="Get backup")
async def get_backup(call: Call, backup_id: BackupRef) -> Backup:
    """One backup's status, size and error, and the status of the last restore made from it."""
    return await call.platform.backups.get(call.principal, backup_id)


@tool(destructive=True, title="Restore backup")
async def restore_backup(
    call: Call,
    backup_id: BackupRef,
    name: Annotated[
        ResourceName | None, Field(description="restore into a NEW database or volume of this name instead")
    ] = None,
    confirm: Confirm = False,
    wait: Wait = True,
) -> Backup:
    """Restore a backup over its database or volume (its current data is replaced; services using a volume stop
    meanwhile), or into a new one with name. The result is in last_restore; past the wait, poll get_backup."""
    backups = call.platform.backups
    if name is None:
        await call.confirm(confirm, await backups.describe_restore(call.principal, backup_id, name))
    else:
        await call.platform.check_disk()
    return await backups.restore(call.principal, backup_id, name, wait, call.report)


@tool(destructive=True, idempotent=False, title="Delete backup")
async def delete_backup(call: Call, backup_id: BackupRef, confirm: Confirm = False) -> Deleted:
    """Delete a backup and its snapshot from your restic repository."""
    backups = call.platform.backups
    await call.confirm(confirm, await backups.describe_delete(call.principal, backup_id))
    return await backups.delete(call.principal, backup_id)
