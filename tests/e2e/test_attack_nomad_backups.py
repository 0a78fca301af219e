"""Attacks on backups on Nomad: the restic job's credentials are never part of any job or allocation Nomad shows,
and links a tenant plants in a volume never carry the job's credentials into a snapshot or a restore."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import docker
import httpx
import pytest

from orchestrator.backends.base import OneShotResult, OneShotSpec, VolumeSpec
from orchestrator.labels import L_TENANT

from .harness import AgentHost, call, connect
from .nomad_agent import backend_of, nomad_get
from .s3 import S3_KEY, S3_SECRET
from .test_nomad_backups import _sh, nomad_s3_host, until_running

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]
__all__ = ["nomad_s3_host"]

_WAIT_FOR_GO = (
    "import hashlib, os, time\n"
    "while not os.path.exists('/data/go'):\n"
    "    time.sleep(0.1)\n"
    "print(hashlib.sha256(os.environ['AH_SECRET'].encode()).hexdigest())\n"
)


def _get(path: str) -> Any:
    try:
        return nomad_get(path)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise


async def test_attack_a_jobs_secret_env_is_in_no_job_or_allocation_nomad_shows(
    nomad_agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    backend = backend_of(nomad_agenthost, f"attack-{tag}")
    secret = f"repo-secret-{uuid.uuid4().hex}"
    volume, job = f"ah-attack-{tag}", f"ah-atk{tag}"
    await backend.ensure_volume(volume, {L_TENANT: "t-attack"})
    spec = OneShotSpec(
        id=f"atk{tag}",
        tenant_id="t-attack",
        image=nomad_agenthost.settings.image_python,
        argv=["python3", "-c", _WAIT_FOR_GO],
        env={"AH_SECRET": secret},
        volume=VolumeSpec(name=volume, path="/data"),
        timeout_s=180,
    )
    results: list[OneShotResult] = []

    async def run() -> None:
        results.append(await backend.run_oneshot(spec))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            running: list[dict[str, Any]] = []
            with anyio.fail_after(120):
                while not running:
                    await anyio.sleep(0.2)
                    running = [a for a in _get(f"job/{job}/allocations") or [] if a["ClientStatus"] == "running"]
            # What any token that may read jobs sees while it runs: the job, its versions, its allocation.
            for shown in (_get(f"job/{job}"), _get(f"job/{job}/versions"), _get(f"allocation/{running[0]['ID']}")):
                assert shown is not None and secret not in json.dumps(shown)
            # The node is this host (the dev agent): let the job finish.
            mountpoint = docker_client.volumes.get(volume).attrs["Mountpoint"]
            (Path(mountpoint) / "go").write_text("")
        (result,) = results
        assert result.exit_code == 0, result
        assert hashlib.sha256(secret.encode()).hexdigest() in result.stdout  # the task did get it
        assert _get(f"job/{job}") is None and _get(f"var/nomad/jobs/{job}") is None
    finally:
        await backend.remove_volume(volume)
        await backend.close()


async def test_attack_links_to_the_restic_jobs_credentials_carry_none_into_snapshots(nomad_s3_host: AgentHost) -> None:
    host = nomad_s3_host
    key = host.tenant("nbk-links")
    mount = [{"name": "data", "path": "/app"}]
    async with connect(host, key, "stdio") as client:
        svc = {"name": "files", "image": host.settings.image_python, "command": ["sleep", "infinity"]}
        await call(client, "deploy_service", {**svc, "volumes": mount})
        # Where the job keeps its credentials, and where an earlier restore would stage.
        await _sh(
            client,
            "files",
            "cd /app && ln -s /secrets/env env && ln -s /proc/self/environ environ && ln -s /proc/1/environ init"
            " && ln -s / .ah-restore-planted && echo kept > kept.txt",
        )
        backup = await call(client, "create_backup", {"volume": "data"})
        assert backup["status"] == "complete", backup
        await until_running(client, "files")
        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "copy"})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        await call(client, "deploy_service", {**svc, "name": "reader", "volumes": [{"name": "copy", "path": "/app"}]})
        listing = await _sh(
            client, "reader", "cd /app && for f in env environ init; do readlink $f; done; cat kept.txt"
        )
        assert "/secrets/env\n/proc/self/environ\n/proc/1/environ\nkept" in listing
        found = await call(
            client,
            "exec",
            {"service": "reader", "command": f"grep -rsl -e {S3_SECRET} -e {S3_KEY} /app; true", "timeout_s": 60},
        )
        assert S3_SECRET not in found["stdout"] and "/app" not in found["stdout"], found
        for name in ("files", "reader"):
            await call(client, "delete_service", {"service": name, "confirm": True})
