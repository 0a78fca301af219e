"""restic where the data lives: a one-shot job beside the volume (``Backend.run_oneshot``), for backends whose
volumes the control plane cannot read (Nomad: they are on the nodes).

The job runs the program in ``backups.in_volume`` with the volume at ``/data`` and the node's own restic
mounted read-only; the repository and its credentials reach it as env, which the backend keeps out of the
job's definition (Nomad: the job's Variable, read by a template). The job uses the node's network: the
repository is the operator's S3 endpoint, often on a private address that tenant bridges may never reach;
no tenant code runs in the job (docs/security.md, "Backups on Nomad"). Everything else restic does (init, snapshots,
forget, unlock) runs on the control plane as on Docker.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio

from ..backends.base import Backend, OneShotResult, OneShotSpec, VolumeSpec
from ..errors import AgentHostError
from ..labels import L_KIND, L_TENANT
from ..settings import Settings
from .restic import ResticRepo

__all__ = ["RESTORE_DIR", "RemoteRestic"]

RESTORE_DIR = ".ah-restore-"  # + the restore's id: where a restore lands at the top of a volume before the swap
_PROGRAM = (Path(__file__).parent / "in_volume.py").read_text()
_RESTIC_IN_JOB = "/usr/local/bin/restic"
# Root in the job reads and writes files of the engines' users (postgres, redis, a service's), nothing more.
_CAPS = ["chown", "dac_override", "fowner"]
_LOCK_RETRIES = 10


class RemoteRestic:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend

    def _spec(self, repo: ResticRepo, tenant_id: str, job: str, volume: str, args: list[str]) -> OneShotSpec:
        restic = shutil.which(self.settings.restic_bin)
        if restic is None:
            raise AgentHostError(f"{self.settings.restic_bin} is not installed", "apt-get install restic")
        return OneShotSpec(
            id=job,
            tenant_id=tenant_id,
            image=self.settings.image_python,
            argv=["python3", "-c", _PROGRAM, *args],
            env=repo.job_env(),
            volume=VolumeSpec(name=volume, path="/data"),
            binaries={_RESTIC_IN_JOB: str(Path(restic).resolve())},
            network="host",
            cap_add=_CAPS,
            timeout_s=self.settings.backup_timeout_s,
            labels={L_TENANT: tenant_id},
        )

    async def _run(
        self, what: str, repo: ResticRepo, tenant_id: str, job: str, volume: str, args: list[str]
    ) -> OneShotResult:
        """Run the program's ``args`` on ``volume``'s node, again while another restic holds the repository's lock.

        Raises: BackupTargetUnavailable, AgentHostError (restic's or the program's message)."""
        for attempt in range(_LOCK_RETRIES):
            res = await self.backend.run_oneshot(self._spec(repo, tenant_id, f"{job}-{attempt}", volume, args))
            if res.exit_code == 0 or "already locked" not in res.stderr:
                break
            await anyio.sleep(2)
        if res.exit_code is None:
            raise AgentHostError(f"{what}: the job did not finish within {self.settings.backup_timeout_s:.0f} s")
        if res.exit_code != 0:
            raise repo.failure(what, res.exit_code, res.stderr)
        return res

    async def stop_jobs(self, tenant_id: str, op_id: str) -> None:
        """Remove the jobs a dead process left running for operation ``op_id``: none may finish a snapshot or a
        restore after its operation was resolved."""
        for job in await self.backend.list_workloads({L_TENANT: tenant_id, L_KIND: "job"}):
            if job.id.startswith((f"{op_id}-bk-", f"{op_id}-rs-")):
                await self.backend.remove_workload(job.id)

    async def backup(
        self, repo: ResticRepo, tenant_id: str, op_id: str, volume: str, folder: str, paths: list[str], tags: list[str]
    ) -> tuple[str, int, list[int] | None]:
        """Snapshot ``paths`` below ``folder`` of ``volume`` (stored relative to it).

        Returns (snapshot id, bytes read, the volume root's [uid, gid, mode])."""
        args = ["backup", folder, json.dumps(tags), *paths]
        res = await self._run("back up", repo, tenant_id, f"{op_id}-bk", volume, args)
        root: list[int] | None = None
        for line in res.stdout.splitlines():
            if line.startswith('{"root"'):
                root = [int(n) for n in json.loads(line)["root"]]
                break
        return (*await repo.summary(res.stdout, tags), root)

    async def restore(
        self, repo: ResticRepo, tenant_id: str, op_id: str, volume: str, folder: str, snapshot: str, then: list[str]
    ) -> None:
        """Restore ``snapshot`` into ``folder`` of ``volume`` (made fresh), then the program's step ``then``."""
        args = ["restore", folder, snapshot, *then]
        await self._run("restore", repo, tenant_id, f"{op_id}-rs", volume, args)
