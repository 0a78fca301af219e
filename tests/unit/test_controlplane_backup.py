"""`agenthost backup`: consistent copies of the control-plane database (VACUUM INTO), keeping the last N."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mcp_server.cli import main


def test_backup_writes_readable_copies_and_keeps_the_last_n(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main(["init", "--data-dir", str(data)]) == 0
    assert main(["tenant", "create", "acme", "--data-dir", str(data)]) == 0
    for _ in range(3):
        assert main(["backup", "--keep", "2", "--data-dir", str(data)]) == 0
    copies = sorted((data / "backups").glob("agenthost-*.db"))
    assert len(copies) == 2
    assert not list((data / "backups").glob("*.part"))
    for copy in copies:
        assert copy.stat().st_mode & 0o077 == 0
        with sqlite3.connect(copy) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            names = sorted(r[0] for r in db.execute("SELECT name FROM tenants"))
            assert names == ["acme", "admin"]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert {"databases", "backups", "restores", "backup_repos"} <= tables
