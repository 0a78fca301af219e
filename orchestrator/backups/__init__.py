"""Backups and restores of databases and volumes: the use-cases (manager) and what they return (models),
restores (restore), reading and writing the data (sources, files), what every operation needs besides the
data (operations), the tenant's restic repository (restic), and databases' data moving off a drained node
(moves)."""

from .manager import BackupManager
from .models import Backup, BackupList, RestoreInfo
from .moves import DataMoves

__all__ = ["Backup", "BackupList", "BackupManager", "DataMoves", "RestoreInfo"]
