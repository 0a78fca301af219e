"""A database whose container dies while a restore's command runs in it: the restore ends `failed` with a
clear error within seconds (not after backup_timeout_s), and the database runs again with its old rows.

Under runsc the engine keeps an exec's stream open after the container died, even once it was restarted;
the platform has to notice the container itself. The death is injected like the sandbox crash that
caused it in production (runsc's sentry panicked and exited): SIGKILL to the sandbox process on the host.
"""

from __future__ import annotations

import os
import signal
import subprocess

import docker
import pytest

from .engine import engine_sh
from .harness import AgentHost, call, connect, until, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROWS_SUM = "psql -X -qAt -d pg -c \"SELECT md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM notes\""
# While this session holds pg_database, every new session waits at sign-in: the restore script's first
# psql blocks, so the database can be killed while the restore's command is certainly running.
HOLD_CATALOG = (
    "psql -X -q -d postgres -c 'BEGIN' -c 'LOCK TABLE pg_database IN ACCESS EXCLUSIVE MODE' -c 'SELECT pg_sleep(600)'"
)

# Whether the restore script runs: a process whose command line holds its AH_NEW (quoted apart here, so
# that this probe's own command line does not match).
RESTORE_RUNNING = (
    "for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in *AH_NE\"\"W*) exit 0;; esac; done;"
    " exit 1"
)


async def test_restore_ends_failed_when_the_database_dies_mid_restore(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("bk-crash")
    async with connect(agenthost, key, "stdio") as client:
        db = await call(client, "create_database", {"name": "pg", "engine": "postgres"})
        code, out = engine_sh(
            db["id"],
            "psql -X -q -v ON_ERROR_STOP=1 -d pg -c 'CREATE TABLE notes (id int PRIMARY KEY, body text)'"
            " -c 'INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 500) g'"
            " -c 'ALTER TABLE notes OWNER TO pg'",
        )
        assert code == 0, out
        code, before = engine_sh(db["id"], ROWS_SUM)
        assert code == 0 and len(before.strip()) == 32, before
        backup = await call(client, "create_backup", {"database": "pg"})
        assert backup["status"] == "complete", backup

        container = docker_client.containers.get(f"ah-{db['id']}")
        holder = subprocess.Popen(
            ["docker", "exec", "-u", "postgres", container.id, "sh", "-c", HOLD_CATALOG],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            started = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True, "wait": False})
            assert started["last_restore"]["status"] == "running", started["last_restore"]
            wait_for(
                lambda: engine_sh(db["id"], RESTORE_RUNNING)[0] == 0,
                timeout=120,
                what="the restore's command running in the database",
            )
            container.reload()
            restarts = container.attrs["RestartCount"]
            os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
        finally:
            holder.kill()
            holder.wait()

        listed = await until(
            client,
            "list_backups",
            {"database": "pg"},
            lambda r: next(b for b in r["backups"] if b["id"] == backup["id"])["last_restore"]["status"] != "running",
            timeout=60,
        )
        last = next(b for b in listed["backups"] if b["id"] == backup["id"])["last_restore"]
        assert last["status"] == "failed", last
        assert "container stopped while it ran" in last["error"], last["error"]

        def restarted_and_serving() -> bool:
            container.reload()
            return container.attrs["RestartCount"] > restarts and engine_sh(db["id"], ROWS_SUM) == (0, before)

        wait_for(restarted_and_serving, timeout=120, what="the database restarted with its old rows")
        got = await call(client, "get_database", {"database": "pg"})
        assert got["status"] == "running", got
