"""The restic command line, one repository per tenant and target (a local directory or an S3 bucket).

restic restores files only below the root-only staging directory (``restore`` refuses any other
target) and backs up such a directory or a volume nothing runs on (see ``backup_ops``). The
repository password never appears in argv: restic reads it (and the S3 keys) from its
environment. restic runs with ``setpriv --pdeathsig KILL`` so a control plane that dies
takes its restic with it, instead of leaving one that finishes a snapshot nobody records.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from ..errors import AgentHostError, BackupTargetUnavailable, InvalidInput
from ..models import BackupTarget
from ..settings import Settings

__all__ = ["ResticRepo", "ResticSnapshot"]

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 5.0
_LOCK_RETRIES = 30
# Phrases restic prints when it cannot reach or open a repository.
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "unable to open config file",
    "access denied",
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "permission denied",
)


class ResticSnapshot:
    def __init__(self, data: dict[str, Any]) -> None:
        self.id: str = data["id"]
        self.tags: list[str] = data.get("tags") or []


class ResticRepo:
    """A tenant's repository at one target."""

    def __init__(
        self,
        settings: Settings,
        tenant_id: str,
        target: BackupTarget,
        password: str,
        known_to_exist: set[str] | None = None,
    ) -> None:
        """``known_to_exist``: urls of repositories this process has opened or created already, shared by its
        caller across instances so that ``ensure`` asks restic once per repository (a fresh set by default)."""
        self.settings = settings
        self.target = target
        self._password = password
        self._known_to_exist = set() if known_to_exist is None else known_to_exist
        if target == "s3":
            if not settings.backup_s3_endpoint:
                raise InvalidInput(
                    "no S3 backup target is configured on this platform",
                    "use target='local', or ask the operator to set AGENTHOST_BACKUP_S3_ENDPOINT and its keys",
                )
            endpoint = settings.backup_s3_endpoint.rstrip("/")
            prefix = settings.backup_s3_prefix.strip("/")
            path = f"{prefix}/{tenant_id}" if prefix else tenant_id
            self.url = f"s3:{endpoint}/{settings.backup_s3_bucket}/{path}"
            self.where = f"S3 endpoint {endpoint}, bucket {settings.backup_s3_bucket}"
        else:
            self.url = str(settings.restic_local_dir / tenant_id)
            self.where = f"local directory {settings.restic_local_dir}"

    # -- plumbing ---------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "RESTIC_PASSWORD": self._password,
            "RESTIC_CACHE_DIR": str(self.settings.data_dir / "restic-cache"),
        }
        if self.target == "s3":
            env["AWS_ACCESS_KEY_ID"] = self.settings.backup_s3_access_key or ""
            env["AWS_SECRET_ACCESS_KEY"] = self.settings.backup_s3_secret_key or ""
            env["AWS_DEFAULT_REGION"] = self.settings.backup_s3_region
        return env

    async def _run(
        self, args: list[str], cwd: Path | None = None, timeout_s: float | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        restic = shutil.which(self.settings.restic_bin)
        if restic is None:
            raise AgentHostError(f"{self.settings.restic_bin} is not installed", "apt-get install restic")
        prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        argv = [*prefix, restic, "--repo", self.url, "--no-cache" if self.target == "local" else "--cleanup-cache"]
        with anyio.fail_after(timeout_s or self.settings.backup_timeout_s):
            return await anyio.run_process([*argv, *args], cwd=cwd, env=self._env(), check=False)

    def job_env(self) -> dict[str, str]:
        """restic's env in a job on a node, which reaches only the S3 target. Raises: InvalidInput."""
        if self.target != "s3":
            raise InvalidInput(
                "the nodes that hold the data cannot reach the control plane's local backup repository",
                "use target='s3' (the operator sets AGENTHOST_BACKUP_S3_ENDPOINT and its keys)",
            )
        env = {k: v for k, v in self._env().items() if k not in ("PATH", "HOME", "RESTIC_CACHE_DIR")}
        return {**env, "RESTIC_REPOSITORY": self.url}

    def failure(self, what: str, exit_code: int, stderr: str) -> AgentHostError:
        """The error for a restic that failed with ``stderr``: BackupTargetUnavailable when it could not reach
        the repository."""
        err = stderr.strip()[-1500:]
        if any(phrase in err.lower() for phrase in _UNREACHABLE):
            return BackupTargetUnavailable(f"{what}: the backup repository at the {self.where} is unreachable: {err}")
        return AgentHostError(f"{what}: restic failed (exit {exit_code}): {err}")

    def _fail(self, what: str, proc: subprocess.CompletedProcess[bytes]) -> AgentHostError:
        return self.failure(what, proc.returncode, proc.stderr.decode("utf-8", "replace"))

    async def _run_locked(
        self, what: str, args: list[str], cwd: Path | None = None, timeout_s: float | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command, waiting while another one holds a conflicting lock on the repository
        (a backup while a delete prunes, a delete while a backup runs). Raises: AgentHostError."""
        for _ in range(_LOCK_RETRIES):
            proc = await self._run(args, cwd=cwd, timeout_s=timeout_s)
            if proc.returncode == 0 or b"already locked" not in proc.stderr:
                break
            await anyio.sleep(2)
        if proc.returncode != 0:
            raise self._fail(what, proc)
        return proc

    # -- the repository ---------------------------------------------------------------------------

    async def probe(self) -> None:
        """Raises: BackupTargetUnavailable at once when the target cannot be reached (restic itself
        would retry for a minute or more before giving up)."""
        if self.target == "local":
            try:
                self.settings.restic_local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise BackupTargetUnavailable(f"the {self.where} is not writable: {exc}") from exc
            return
        parts = urlsplit(self.settings.backup_s3_endpoint or "")
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with anyio.fail_after(_PROBE_TIMEOUT_S):
                stream = await anyio.connect_tcp(host, port)
            await stream.aclose()
        except (OSError, TimeoutError) as exc:
            raise BackupTargetUnavailable(
                f"the backup repository at the {self.where} is unreachable ({exc or 'timed out'})"
            ) from exc

    async def ensure(self) -> None:
        """Probe the target and create the repository on first use. Raises: BackupTargetUnavailable."""
        await self.probe()
        if self.url in self._known_to_exist:
            return
        proc = await self._run(["cat", "config"], timeout_s=120)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").lower()
            if "unable to open config file" not in err and "does not exist" not in err:
                raise self._fail("open backup repository", proc)
            init = await self._run(["init"], timeout_s=120)
            # Another process may have created it in the meantime.
            if init.returncode != 0 and b"already" not in init.stderr:
                raise self._fail("create backup repository", init)
        self._known_to_exist.add(self.url)

    async def backup(self, cwd: Path, tags: list[str]) -> tuple[str, int]:
        """Snapshot the contents of ``cwd`` (stored relative to it). Returns (snapshot id, bytes read)."""
        args = ["backup", "--json", "--host", "agenthost"]
        for tag in tags:
            args += ["--tag", tag]
        proc = await self._run_locked("back up", [*args, "."], cwd=cwd)
        return await self.summary(proc.stdout.decode("utf-8", "replace"), tags)

    async def summary(self, output: str, tags: list[str]) -> tuple[str, int]:
        """The snapshot id and bytes read that ``restic backup --json`` printed. Raises: AgentHostError."""
        for line in reversed(output.splitlines()):
            if '"summary"' in line:
                summary = json.loads(line)
                break
        else:
            raise AgentHostError("restic finished without a snapshot summary")
        short = str(summary["snapshot_id"])
        # The summary names the snapshot by a prefix; keep the full id, which stays unambiguous.
        full = [s.id for s in await self.snapshots(tags[0]) if s.id.startswith(short)] if tags else []
        return (full[0] if len(full) == 1 else short), int(summary.get("total_bytes_processed", 0))

    async def snapshots(self, tag: str) -> list[ResticSnapshot]:
        proc = await self._run(["snapshots", "--json", "--tag", tag], timeout_s=300)
        if proc.returncode != 0:
            raise self._fail("list snapshots", proc)
        return [ResticSnapshot(s) for s in json.loads(proc.stdout or b"[]") or []]

    async def restore(self, snapshot_id: str, target: Path) -> None:
        """Restore into ``target``, an operation's directory below the staging directory. restic follows links
        in the tree it writes, so it never writes where a tenant can. Raises: AgentHostError."""
        staging = self.settings.backup_staging_dir.resolve()
        if target.resolve().parent != staging:
            raise AgentHostError(f"refusing to restore into {target}: restores go below {staging} only")
        await self._run_locked("restore", ["restore", snapshot_id, "--target", str(target)])

    async def forget(self, snapshot_id: str) -> None:
        await self._run_locked("delete snapshot", ["forget", "--prune", snapshot_id])

    async def unlock(self) -> None:
        """Remove locks left by a restic that died with its control plane (only stale ones)."""
        proc = await self._run(["unlock"], timeout_s=120)
        if proc.returncode != 0:
            log.warning("restic unlock failed: %s", proc.stderr[-500:])
