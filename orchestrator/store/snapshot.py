"""Consistent copies of the control-plane database (``VACUUM INTO``), keeping the last N."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from . import Database

__all__ = ["backup_control_plane"]


async def backup_control_plane(db: Database, folder: Path, keep: int) -> Path:
    """Write a new copy and prune the oldest beyond ``keep``. Returns the new file."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"agenthost-{stamp}.db"
    partial = target.with_suffix(".db.part")
    await db.vacuum_into(partial)
    os.chmod(partial, 0o600)
    os.replace(partial, target)
    copies = sorted(folder.glob("agenthost-*.db"))
    for old in copies[: max(0, len(copies) - max(keep, 1))]:
        old.unlink()
    return target
