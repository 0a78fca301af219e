"""How each source is captured for restic and put back, and how each capture is made consistent.

- **Postgres**: ``pg_dump --format=custom`` inside the running database. pg_dump reads one
  MVCC snapshot, so the dump is consistent while the database keeps serving. It is written
  to the data volume beside the cluster (``ah-dumps/<id>``), where restic reads it. A
  restore loads the dump into a fresh database and swaps it in by renaming, in one
  transaction, so a failed restore leaves the old data untouched.
- **Redis**: ``BGSAVE`` (a forked child writes a point-in-time RDB), waiting until Redis
  reports a new successful save, then a copy of ``dump.rdb`` (Redis replaces that file by
  rename, so the copy is always whole). A restore stops Redis, installs the RDB as the base
  of its append-only file (multi-part AOF, Redis 7+) and as ``dump.rdb``, and starts it.
- **Service volumes**: files. The services that mount the volume are stopped for the copy
  and started again. Under gVisor a running service's writes may still sit in the
  sandbox's own page cache, so only a stopped container guarantees that the files on the
  host are complete and agree with each other; the price is a short downtime.

Files reach restic through the volume's directory on the Docker host
(``Backend.volume_path_or_mount``), so the control plane must run on that host as root.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import anyio

from .backends.base import Backend, ExecResult
from .db_engines import DUMP_DIR, ENGINES
from .errors import AgentHostError, WorkloadFailed
from .models import DatabaseRecord, untrusted
from .secrets import mask_secrets

__all__ = [
    "PG_DUMP_FILE",
    "REDIS_FILE",
    "chown_like",
    "clear_and_replace",
    "dump_postgres",
    "restore_postgres",
    "save_redis",
    "settle_redis_files",
    "swap_redis_files",
    "volume_dir",
]

PG_DUMP_FILE = "postgres.dump"
REDIS_FILE = "dump.rdb"
_AOF_DIR = "appendonlydir"
_AOF_BASE = "appendonly.aof.1.base.rdb"
_AOF_MANIFEST = "appendonly.aof.manifest"


async def volume_dir(backend: Backend, volume: str) -> Path:
    path = Path(await backend.volume_path_or_mount(volume))
    if not os.access(path, os.R_OK | os.W_OK):
        raise AgentHostError(
            f"the control plane cannot read volume {volume} at {path}",
            "backups need `agenthost serve` running as root on the Docker host",
        )
    return path


def _check(res: ExecResult, what: str, secret: str) -> None:
    if res.timed_out:
        raise WorkloadFailed(f"{what} timed out after {res.duration_ms // 1000} s", "retry when the load is lower")
    if res.exit_code != 0:
        tail = mask_secrets((res.stderr or res.stdout)[-2000:], [secret])
        raise WorkloadFailed(f"{what} failed (exit {res.exit_code}):\n{untrusted(tail)}", "read the output above")


def chown_like(reference: Path, *paths: Path) -> None:
    """Give restored files the owner of the volume, so the engine's own user can read them."""
    st = reference.stat()
    for top in paths:
        os.chown(top, st.st_uid, st.st_gid)
        if top.is_dir():
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), st.st_uid, st.st_gid)


# -- Postgres -------------------------------------------------------------------------------------


def _pg_env(rec: DatabaseRecord, password: str) -> dict[str, str]:
    return {
        "PGPASSWORD": password,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(rec.spec.port),
        "PGUSER": rec.spec.username,
        "AH_DB": rec.spec.db_name or rec.spec.username,
    }


async def dump_postgres(backend: Backend, rec: DatabaseRecord, password: str, op_id: str, timeout_s: float) -> Path:
    """pg_dump into the data volume. Returns the host directory that holds the dump."""
    remote = f"{ENGINES['postgres'].data_path}/{DUMP_DIR}/{op_id}"
    script = (
        'mkdir -p "$AH_DIR" && chmod 700 "$AH_DIR" && '
        f'exec pg_dump --format=custom --no-password -d "$AH_DB" -f "$AH_DIR/{PG_DUMP_FILE}"'
    )
    env = {**_pg_env(rec, password), "AH_DIR": remote}
    res = await backend.exec(rec.id, ["sh", "-c", script], timeout_s=timeout_s, env=env)
    _check(res, "pg_dump", password)
    host_dir = await volume_dir(backend, rec.spec.volume) / DUMP_DIR / op_id
    if not (host_dir / PG_DUMP_FILE).is_file():
        raise AgentHostError(f"pg_dump reported success but left no dump in {host_dir}")
    return host_dir


# Load into a scratch database, then swap it in by renaming inside one transaction; the old
# database is dropped only once the new one holds the name. Connections to the old one are
# refused, then ended, so the rename cannot race a client.
_PG_RESTORE = """set -e
q() { psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@" >/dev/null; }
q -c "DROP DATABASE IF EXISTS \\"$AH_NEW\\" WITH (FORCE)" -c "DROP DATABASE IF EXISTS \\"$AH_OLD\\" WITH (FORCE)"
q -c "CREATE DATABASE \\"$AH_NEW\\""
if ! pg_restore --exit-on-error --no-owner --no-acl -d "$AH_NEW" "$AH_FILE"; then
  q -c "DROP DATABASE IF EXISTS \\"$AH_NEW\\" WITH (FORCE)"
  exit 3
fi
q -c "ALTER DATABASE \\"$AH_DB\\" ALLOW_CONNECTIONS false"
others="SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$AH_DB' AND pid <> pg_backend_pid()"
if ! q -1 -c "$others" -c "ALTER DATABASE \\"$AH_DB\\" RENAME TO \\"$AH_OLD\\"" \\
     -c "ALTER DATABASE \\"$AH_NEW\\" RENAME TO \\"$AH_DB\\""; then
  q -c "ALTER DATABASE \\"$AH_DB\\" ALLOW_CONNECTIONS true" -c "DROP DATABASE IF EXISTS \\"$AH_NEW\\" WITH (FORCE)"
  exit 4
fi
q -c "DROP DATABASE \\"$AH_OLD\\" WITH (FORCE)"
"""


async def restore_postgres(backend: Backend, rec: DatabaseRecord, password: str, op_id: str, timeout_s: float) -> None:
    """Replace the database's contents with the dump restic put at ``ah-dumps/<op_id>`` on its volume."""
    db = rec.spec.db_name or rec.spec.username
    env = {
        **_pg_env(rec, password),
        "AH_NEW": f"{db}__ah_restore",
        "AH_OLD": f"{db}__ah_old",
        "AH_FILE": f"{ENGINES['postgres'].data_path}/{DUMP_DIR}/{op_id}/{PG_DUMP_FILE}",
    }
    res = await backend.exec(rec.id, ["sh", "-c", _PG_RESTORE], timeout_s=timeout_s, env=env)
    _check(res, "pg_restore", password)


# -- Redis ----------------------------------------------------------------------------------------


def _info_field(info: str, name: str) -> str:
    for line in info.splitlines():
        key, _, value = line.strip().partition(":")
        if key == name:
            return value.strip()
    raise AgentHostError(f"Redis INFO has no field {name!r} (Redis 7 or newer is required)")


async def save_redis(backend: Backend, rec: DatabaseRecord, password: str, dest: Path, timeout_s: float) -> Path:
    """BGSAVE, wait for a save that started after this call, copy the RDB to ``dest``. Returns the copy."""

    async def cli(*args: str) -> str:
        res = await backend.exec(
            rec.id, ["redis-cli", "--no-auth-warning", *args], timeout_s=30, env={"REDISCLI_AUTH": password}
        )
        _check(res, f"redis-cli {args[0]}", password)
        return res.stdout

    deadline = time.monotonic() + timeout_s
    saved = False
    while not saved:
        info = await cli("INFO", "persistence")
        before = int(_info_field(info, "rdb_saves"))
        # A save already running began before this request: let it end, then ask for ours.
        if _info_field(info, "rdb_bgsave_in_progress") == "0":
            answer = await cli("BGSAVE", "SCHEDULE")
            if "already in progress" not in answer:
                if "Background saving" not in answer:
                    raise WorkloadFailed(f"BGSAVE refused: {untrusted(answer.strip()[:500])}")
                while not saved:
                    info = await cli("INFO", "persistence")
                    saved = (
                        int(_info_field(info, "rdb_saves")) > before
                        and _info_field(info, "rdb_bgsave_in_progress") == "0"
                    )
                    if not saved:
                        if time.monotonic() > deadline:
                            raise WorkloadFailed("BGSAVE did not finish in time", "retry when the load is lower")
                        await anyio.sleep(0.2)
                if _info_field(info, "rdb_last_bgsave_status") != "ok":
                    raise WorkloadFailed("BGSAVE failed inside Redis", "read the database's memory and disk usage")
                break
        if time.monotonic() > deadline:
            raise WorkloadFailed("another save kept Redis busy; BGSAVE did not start in time")
        await anyio.sleep(0.2)
    source = await volume_dir(backend, rec.spec.volume) / REDIS_FILE

    def copy() -> Path:
        dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Path(shutil.copy2(source, dest / REDIS_FILE))

    return await anyio.to_thread.run_sync(copy)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(0o600)


def swap_redis_files(mount: Path, rdb: Path) -> None:
    """Install an RDB into a stopped Redis's volume: as the AOF base (read when appendonly is on)
    and as dump.rdb (read when it is off). New files are written beside the old, then renamed in."""
    settle_redis_files(mount)
    data = rdb.read_bytes()
    new_aof = mount / f"{_AOF_DIR}.ah-new"
    new_aof.mkdir(mode=0o755)
    _write_synced(new_aof / _AOF_BASE, data)
    _write_synced(new_aof / _AOF_MANIFEST, f"file {_AOF_BASE} seq 1 type b\n".encode())
    _write_synced(mount / f"{REDIS_FILE}.ah-new", data)
    chown_like(mount, new_aof, mount / f"{REDIS_FILE}.ah-new")
    aof, old = mount / _AOF_DIR, mount / f"{_AOF_DIR}.ah-old"
    if aof.exists():
        aof.rename(old)
    new_aof.rename(aof)
    (mount / f"{REDIS_FILE}.ah-new").replace(mount / REDIS_FILE)
    shutil.rmtree(old, ignore_errors=True)


def settle_redis_files(mount: Path) -> None:
    """After an interrupted swap: put the old AOF back if the new one never took its place, drop leftovers."""
    aof, old = mount / _AOF_DIR, mount / f"{_AOF_DIR}.ah-old"
    if old.exists() and not aof.exists():
        old.rename(aof)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(mount / f"{_AOF_DIR}.ah-new", ignore_errors=True)
    (mount / f"{REDIS_FILE}.ah-new").unlink(missing_ok=True)


# -- volumes --------------------------------------------------------------------------------------


def clear_and_replace(mount: Path, staged: Path) -> None:
    """Make ``mount`` hold exactly what ``staged`` (a directory inside it) holds."""
    for entry in mount.iterdir():
        if entry == staged:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in staged.iterdir():
        entry.rename(mount / entry.name)
    staged.rmdir()
