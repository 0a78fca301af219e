"""How each source is captured for restic and put back, and how each capture is made consistent.

- **Postgres**: ``pg_dump --format=custom`` inside the running database. pg_dump reads one
  MVCC snapshot, so the dump is consistent while the database keeps serving. It is written
  to the data volume beside the cluster (``ah-dumps/<id>``) and copied from there into the
  staging directory, where restic reads it. A restore puts the dump back at ``ah-dumps/<id>``
  from staging, loads it into a fresh database and swaps that in by renaming, in one
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
(``Backend.volume_path_or_mount``), so the control plane must run on that host as root. Every
volume is a tree its tenant can write, so root touches it only through ``backups.files`` (no link
is ever followed) and restic never writes into it: restores land in the root-owned staging
directory (``Settings.backup_staging_dir``) and are copied in from there. restic reads a volume
directly only for a volume backup, while nothing of the tenant runs on it (``backup_ops``); it
stores links as links and opens files with ``O_NOFOLLOW``.

Where the volumes live on other hosts (Nomad's nodes: ``Backend.local_volumes`` is False), the same
captures are made in place (``pg_dump_in_volume``, ``bgsave``) and restic reads and writes them on the
node, in a one-shot job (``backups.remote``, ``backups.in_volume``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from ..backends.base import Backend, ExecResult, ExecSpec
from ..databases.engines import DUMP_DIR, ENGINES
from ..errors import AgentHostError, UnsafePath, WorkloadFailed
from ..models import DatabaseRecord, untrusted
from ..secrets import mask_secrets
from .files import copy_out, copy_tree_in, exists, open_dir, open_root, owner_of, remove, remove_all, write_file

__all__ = [
    "PG_DUMP_FILE",
    "REDIS_FILE",
    "bgsave",
    "clear_and_replace",
    "copy_dump_out",
    "copy_rdb_out",
    "dump_postgres",
    "pg_dump_in_volume",
    "place_dump",
    "remove_dump",
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
    if res.exit_code is None:
        raise WorkloadFailed(
            f"{what} was cut off after {res.duration_ms // 1000} s: the database's container stopped while it ran",
            "the database restarts on its own: wait until get_database says running, then try again",
        )
    if res.exit_code != 0:
        tail = mask_secrets((res.stderr or res.stdout)[-2000:], [secret])
        raise WorkloadFailed(f"{what} failed (exit {res.exit_code}):\n{untrusted(tail)}", "read the output above")


# -- Postgres -------------------------------------------------------------------------------------


def _pg_env(rec: DatabaseRecord) -> dict[str, str]:
    """As the superuser over the container's local socket, where it needs no password; AH_ROLE is the tenant's."""
    return {
        "PGHOST": "/tmp",
        "PGPORT": str(rec.spec.port),
        "PGUSER": rec.spec.admin_user or rec.spec.username,
        "AH_ROLE": rec.spec.username,
        "AH_DB": rec.spec.db_name or rec.spec.username,
    }


async def dump_postgres(
    backend: Backend, rec: DatabaseRecord, password: str, op_id: str, staging: Path, timeout_s: float
) -> Path:
    """pg_dump into the data volume, then a copy of the dump into ``staging`` (root's). Returns the copy."""
    await pg_dump_in_volume(backend, rec, password, op_id, timeout_s)
    return await anyio.to_thread.run_sync(copy_dump_out, await volume_dir(backend, rec.spec.volume), op_id, staging)


async def pg_dump_in_volume(backend: Backend, rec: DatabaseRecord, password: str, op_id: str, timeout_s: float) -> str:
    """pg_dump into ``ah-dumps/<op_id>`` on the data volume; returns that folder's path in the volume."""
    remote = f"{ENGINES['postgres'].data_path}/{DUMP_DIR}/{op_id}"
    script = (
        'mkdir -p "$AH_DIR" && chmod 700 "$AH_DIR" && '
        f'exec pg_dump --format=custom --no-password -d "$AH_DB" -f "$AH_DIR/{PG_DUMP_FILE}"'
    )
    env = {**_pg_env(rec), "AH_DIR": remote}
    res = await backend.exec(rec.id, ExecSpec(["sh", "-c", script], timeout_s=timeout_s, env=env))
    _check(res, "pg_dump", password)
    return f"{DUMP_DIR}/{op_id}"


def copy_dump_out(mount: Path, op_id: str, staging: Path) -> Path:
    """Copy ``ah-dumps/<op_id>/postgres.dump`` from the volume into ``staging``. Raises: UnsafePath,
    AgentHostError when there is no dump."""
    try:
        with open_root(mount) as root, open_dir(root, DUMP_DIR) as dumps, open_dir(dumps, op_id) as folder:
            copy_out(folder, PG_DUMP_FILE, staging / PG_DUMP_FILE)
    except FileNotFoundError as exc:
        raise AgentHostError(f"pg_dump reported success but left no {DUMP_DIR}/{op_id}/{PG_DUMP_FILE}") from exc
    return staging / PG_DUMP_FILE


def place_dump(mount: Path, op_id: str, dump: Path) -> None:
    """Put the staged ``dump`` at ``ah-dumps/<op_id>/postgres.dump`` on the volume, owned like the volume's
    root (the engine's user), for pg_restore inside the container. Raises: UnsafePath."""
    with open_root(mount) as root:
        owner = owner_of(root)
        with open_dir(root, DUMP_DIR, create=owner) as dumps, open_dir(dumps, op_id, create=owner) as folder:
            write_file(folder, PG_DUMP_FILE, dump, owner)


def remove_dump(mount: Path, op_id: str) -> None:
    """Remove ``ah-dumps/<op_id>`` from the volume; a link at ``ah-dumps`` is left alone, never followed."""
    with open_root(mount) as root:
        try:
            with open_dir(root, DUMP_DIR) as dumps:
                remove(dumps, op_id)
        except (FileNotFoundError, UnsafePath):
            return


# Load into a scratch database owned by the tenant's role, then swap it in by renaming inside one
# transaction; the old database is dropped only once the new one holds the name. Connections to the
# old one are refused, then ended, so the rename cannot race a client. pg_restore signs in as the
# tenant's role itself, not as the superuser with SET ROLE: the dump is the tenant's, and a function
# of its own run during the load (a CHECK constraint, a trigger) could RESET ROLE back to the session's
# user. Everything it creates belongs to the tenant's role.
_PG_RESTORE = """set -e
q() { psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@" >/dev/null; }
q -c "DROP DATABASE IF EXISTS \\"$AH_NEW\\" WITH (FORCE)" -c "DROP DATABASE IF EXISTS \\"$AH_OLD\\" WITH (FORCE)"
q -c "CREATE DATABASE \\"$AH_NEW\\" OWNER \\"$AH_ROLE\\"" -c "REVOKE ALL ON DATABASE \\"$AH_NEW\\" FROM PUBLIC"
if ! pg_restore --exit-on-error --no-owner --no-acl -U "$AH_ROLE" -d "$AH_NEW" "$AH_FILE"; then
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
    """Replace the database's contents with the dump ``place_dump`` put at ``ah-dumps/<op_id>`` on its volume."""
    db = rec.spec.db_name or rec.spec.username
    env = {
        **_pg_env(rec),
        "AH_NEW": f"{db}__ah_restore",
        "AH_OLD": f"{db}__ah_old",
        "AH_FILE": f"{ENGINES['postgres'].data_path}/{DUMP_DIR}/{op_id}/{PG_DUMP_FILE}",
    }
    res = await backend.exec(rec.id, ExecSpec(["sh", "-c", _PG_RESTORE], timeout_s=timeout_s, env=env))
    _check(res, "pg_restore", password)


# -- Redis ----------------------------------------------------------------------------------------


def _info_field(info: str, name: str) -> str:
    for line in info.splitlines():
        key, _, value = line.strip().partition(":")
        if key == name:
            return value.strip()
    raise AgentHostError(f"Redis INFO has no field {name!r} (Redis 7 or newer is required)")


async def save_redis(backend: Backend, rec: DatabaseRecord, password: str, dest: Path, timeout_s: float) -> Path:
    """BGSAVE, wait for a save that started after this call, copy the RDB into the root-owned directory
    ``dest``. Returns the copy. Raises: UnsafePath when ``dump.rdb`` is a link or not a regular file."""
    await bgsave(backend, rec, password, timeout_s)
    return await anyio.to_thread.run_sync(copy_rdb_out, await volume_dir(backend, rec.spec.volume), dest)


async def bgsave(backend: Backend, rec: DatabaseRecord, password: str, timeout_s: float) -> None:
    """BGSAVE, and wait for a save that started after this call: ``dump.rdb`` on the volume is then whole and
    new (Redis replaces it by rename). Raises: WorkloadFailed."""

    async def cli(*args: str) -> str:
        res = await backend.exec(
            rec.id, ExecSpec(["redis-cli", "--no-auth-warning", *args], timeout_s=30, env={"REDISCLI_AUTH": password})
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


def copy_rdb_out(mount: Path, dest: Path) -> Path:
    """Copy the volume's ``dump.rdb`` into ``dest``. Raises: UnsafePath for a link or a non-regular file,
    AgentHostError when there is none."""
    try:
        with open_root(mount) as root:
            copy_out(root, REDIS_FILE, dest / REDIS_FILE)
    except FileNotFoundError as exc:
        raise AgentHostError(f"Redis reported a successful save but its volume holds no {REDIS_FILE}") from exc
    return dest / REDIS_FILE


def swap_redis_files(mount: Path, rdb: Path) -> None:
    """Install a staged RDB into a stopped Redis's volume: as the AOF base (read when appendonly is on)
    and as dump.rdb (read when it is off). New files are written beside the old, then renamed in."""
    with open_root(mount) as root:
        _settle(root)
        owner = owner_of(root)
        with open_dir(root, f"{_AOF_DIR}.ah-new", create=owner, mode=0o755) as new_aof:
            write_file(new_aof, _AOF_BASE, rdb, owner)
            write_file(new_aof, _AOF_MANIFEST, f"file {_AOF_BASE} seq 1 type b\n".encode(), owner)
        write_file(root, f"{REDIS_FILE}.ah-new", rdb, owner)
        # rename works on the entries themselves: a link at either name is moved or replaced, never followed.
        if exists(root, _AOF_DIR):
            os.rename(_AOF_DIR, f"{_AOF_DIR}.ah-old", src_dir_fd=root, dst_dir_fd=root)
        os.rename(f"{_AOF_DIR}.ah-new", _AOF_DIR, src_dir_fd=root, dst_dir_fd=root)
        os.replace(f"{REDIS_FILE}.ah-new", REDIS_FILE, src_dir_fd=root, dst_dir_fd=root)
        remove(root, f"{_AOF_DIR}.ah-old")


def settle_redis_files(mount: Path) -> None:
    """After an interrupted swap: put the old AOF back if the new one never took its place, drop leftovers."""
    with open_root(mount) as root:
        _settle(root)


def _settle(root: int) -> None:
    aof, old = _AOF_DIR, f"{_AOF_DIR}.ah-old"
    if exists(root, old) and not exists(root, aof):
        os.rename(old, aof, src_dir_fd=root, dst_dir_fd=root)
    for leftover in (old, f"{_AOF_DIR}.ah-new", f"{REDIS_FILE}.ah-new"):
        remove(root, leftover)


# -- volumes --------------------------------------------------------------------------------------


def clear_and_replace(mount: Path, staged: Path, root_meta: tuple[int, int, int] | None = None) -> None:
    """Make the volume at ``mount`` hold exactly the staged tree (a root-owned directory outside it). The
    volume's root keeps its owner and mode unless ``root_meta`` (uid, gid, mode) is given."""
    with open_root(mount) as root:
        remove_all(root)
        copy_tree_in(staged, root)
        if root_meta is not None:
            uid, gid, mode = root_meta
            os.fchown(root, uid, gid)
            os.fchmod(root, mode)
