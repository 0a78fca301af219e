"""Backups and restores of databases and volumes: the use-cases (manager) and what they return (models),
restores (restore), reading and writing the data (sources, files), what every operation needs besides the
data (operations), and the tenant's restic repository (restic)."""

from .manager import BackupManager
from .models import Backup, BackupList, RestoreInfo

__all__ = ["Backup", "BackupList", "BackupManager", "RestoreInfo"]
