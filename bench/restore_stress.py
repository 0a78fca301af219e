"""Stress: back up a Postgres database and restore it over itself, round after round, over MCP stdio.

Each round checks that the restore ended `complete` within a bound, that the rows are identical, and
whether the database's container restarted meanwhile (a crash the platform hid by restarting it).
A round that goes wrong prints the container's log since the round began. Exit status 1 when any
round failed. Usage (from bench/, as root on the Docker host):
AGENTHOST_TOOLSETS=all ../.venv/bin/python restore_stress.py [ROUNDS] [ROWS]
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import docker

from common import Platform, tool


class PidsWatch:
    """Samples the container's host pids cgroup (v1): the peak task count and fork refusals (pids.events max)."""

    def __init__(self, container_id: str) -> None:
        self.path = Path(f"/sys/fs/cgroup/pids/docker/{container_id}")
        self.peak = 0
        self.refused = 0
        self.limit = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, int((self.path / "pids.current").read_text()))
                self.limit = (self.path / "pids.max").read_text().strip()
                self.refused = max(self.refused, int((self.path / "pids.events").read_text().split()[1]))
            except (OSError, ValueError, IndexError):
                pass

    def take(self) -> tuple[int, int]:
        peak, refused = self.peak, self.refused
        self.peak = self.refused = 0
        return peak, refused

    def stop(self) -> None:
        self._stop.set()


SUM = "SELECT md5(string_agg(id || ':' || body, ',' ORDER BY id)) FROM notes"


def _psql(container: docker.models.containers.Container, sql: str) -> str:
    code, out = container.exec_run(
        ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-d", "pg", "-c", sql],
        environment={"PGHOST": "/tmp"},
        user="postgres",
    )
    if code != 0:
        raise RuntimeError(f"psql failed ({code}): {out.decode()[-2000:]}")
    return out.decode().strip()


async def _restore(client: object, backup_id: str, bound_s: float) -> tuple[str, str | None, float]:
    started = time.monotonic()
    out = await tool(client, "restore_backup", {"backup_id": backup_id, "confirm": True})  # type: ignore[arg-type]
    last = out["last_restore"]
    while last["status"] == "running" and time.monotonic() - started < bound_s:
        await anyio.sleep(1)
        listed = await tool(client, "list_backups", {"database": "pg"})  # type: ignore[arg-type]
        last = next(b for b in listed["backups"] if b["id"] == backup_id)["last_restore"]
    return last["status"], last["error"], time.monotonic() - started


async def main(rounds: int, rows: int) -> int:
    docker_client = docker.from_env(version="auto")
    platform = Platform()
    failures = 0
    try:
        async with platform.client() as client:
            db = await tool(client, "create_database", {"name": "pg", "engine": "postgres"})
            assert db["status"] == "running", db
            container = docker_client.containers.get(f"ah-{db['id']}")
            _psql(container, "CREATE TABLE notes (id int PRIMARY KEY, body text)")
            _psql(container, f"INSERT INTO notes SELECT g, md5(random()::text) FROM generate_series(1, {rows}) g")
            _psql(container, "ALTER TABLE notes OWNER TO pg")
            expected = _psql(container, SUM)
            watch = PidsWatch(container.id)
            for i in range(1, rounds + 1):
                since = datetime.now(UTC)
                container.reload()
                restarts = container.attrs["RestartCount"]
                backup = await tool(client, "create_backup", {"database": "pg"})
                status, error, took = "backup " + backup["status"], backup["error"], 0.0
                if backup["status"] == "complete":
                    status, error, took = await _restore(client, backup["id"], 120)
                container.reload()
                restarted = container.attrs["RestartCount"] - restarts
                ok = status == "complete" and not restarted
                if ok:
                    deadline = time.monotonic() + 60
                    while True:
                        try:
                            ok = _psql(container, SUM) == expected
                            break
                        except RuntimeError:
                            if time.monotonic() > deadline:
                                raise
                            await anyio.sleep(0.5)
                failures += not ok
                peak, refused = watch.take()
                print(
                    f"round {i:2}: {status:9} in {took:6.1f} s, restarts +{restarted}, rows {'ok' if ok else 'BAD'}, "
                    f"host tasks peak {peak}/{watch.limit}, forks refused {refused}"
                )
                if not ok:
                    print(f"  error: {error}")
                    kernel = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
                    print(
                        "  kernel: "
                        + "\n  kernel: ".join(x for x in kernel if container.id[:12] in x or "fork rej" in x)
                    )
                    print("  " + container.logs(since=since).decode(errors="replace")[-6000:].replace("\n", "\n  "))
                    while container.reload() or container.status != "running":
                        await anyio.sleep(1)
                    if status == "running":
                        print("  the restore is still running: stopping (a new backup would conflict with it)")
                        failures += rounds - i
                        break
                sys.stdout.flush()
            watch.stop()
    finally:
        platform.cleanup(docker_client)
        docker_client.close()
    print(f"{rounds - failures}/{rounds} rounds ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(
        anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 15, int(sys.argv[2]) if len(sys.argv) > 2 else 20000)
    )
