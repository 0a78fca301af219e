"""What the backup tools return: a backup and the last restore of it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..models import BackupKind, BackupStatus, BackupTarget

__all__ = ["Backup", "BackupList", "RestoreInfo"]


class RestoreInfo(BaseModel):
    id: str
    status: BackupStatus
    into: str = Field(description="the database or volume restored into")
    created_new: bool = Field(description="true when the restore made a new database or volume")
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class Backup(BaseModel):
    id: str
    kind: BackupKind
    source: str = Field(description="name of the database or volume backed up")
    target: BackupTarget
    status: BackupStatus
    size_bytes: int | None = Field(None, description="bytes read from the source")
    error: str | None = None
    created_at: datetime
    last_restore: RestoreInfo | None = None


class BackupList(BaseModel):
    backups: list[Backup]
