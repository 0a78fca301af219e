"""Backups on the three-node cluster: restic runs on the node that holds the volume, reaching the S3 repository
(moto on the host's bridge address, the only host address the nodes reach) over the node's own network; the
snapshot restores into a new volume on the other node."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from .harness import VENV_BIN, AgentHost, call, connect, free_port, wait_for
from .nomad_cluster import Cluster, cluster_get, purge_jobs
from .test_backups import FILES_SUM, S3_BUCKET, S3_KEY, S3_SECRET
from .test_nomad_backups import _sh, until_running

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

_HOST = "10.89.0.1"  # the host on the cluster's bridge (infra/nomad-testcluster.sh)


def _open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex((_HOST, port)) == 0


@pytest.fixture(scope="module")
def cluster_s3_host(nomad_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    port = free_port()
    moto = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", _HOST, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://{_HOST}:{port}"
    host = AgentHost(
        data_dir=Path(tmp_path_factory.mktemp("agenthost-cluster-s3")),
        env={
            **nomad_cluster.platform_env(),
            "AGENTHOST_BACKUP_TARGET": "s3",
            "AGENTHOST_BACKUP_S3_ENDPOINT": endpoint,
            "AGENTHOST_BACKUP_S3_BUCKET": S3_BUCKET,
            "AGENTHOST_BACKUP_S3_ACCESS_KEY": S3_KEY,
            "AGENTHOST_BACKUP_S3_SECRET_KEY": S3_SECRET,
        },
    )
    try:
        wait_for(lambda: _open(port), 30, what="moto S3 server")
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=S3_BUCKET)
        host.init()
        yield host
    finally:
        host.stop()
        purge_jobs(nomad_cluster, host.instance, set(host.tenant_ids.values()))
        moto.terminate()
        moto.wait(10)


def _node_of(cluster: Cluster, service_id: str) -> str:
    allocs = cluster_get(cluster, f"job/ah-{service_id}/allocations")
    (node,) = {a["NodeID"] for a in allocs if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"}
    return str(node)


async def test_a_volume_backed_up_on_one_node_restores_onto_the_other(
    cluster_s3_host: AgentHost, nomad_cluster: Cluster
) -> None:
    host = cluster_s3_host
    python = host.settings.image_python

    def files(name: str, volume: str) -> dict[str, Any]:
        mount = [{"name": volume, "path": "/app"}]
        return {"name": name, "image": python, "command": ["sleep", "infinity"], "volumes": mount, "memory_mb": 64}

    async with (
        connect(host, host.admin_key, "http") as admin,
        connect(host, host.tenant("cl-bk"), "http") as client,
    ):
        first = await call(client, "deploy_service", files("files", "data"))
        assert first["status"] == "running", first
        await _sh(
            client,
            "files",
            "head -c 200000 /dev/urandom > /app/blob.bin && mkdir /app/sub && chmod 750 /app/sub"
            " && echo hello > /app/sub/note.txt && chmod 600 /app/sub/note.txt",
        )
        before = await _sh(client, "files", FILES_SUM)
        backup = await call(client, "create_backup", {"volume": "data"})
        assert backup["status"] == "complete", backup
        await until_running(client, "files")
        first_node = _node_of(nomad_cluster, first["id"])

        # The node that holds the data takes nothing new: the restore goes to the other one.
        await call(admin, "set_node_eligibility", {"node": first_node, "eligible": False})
        try:
            restored = await call(client, "restore_backup", {"backup_id": backup["id"], "name": "copy"})
            assert restored["last_restore"]["status"] == "complete", restored["last_restore"]["error"]
        finally:
            await call(admin, "set_node_eligibility", {"node": first_node, "eligible": True})
        reader = await call(client, "deploy_service", files("reader", "copy"))
        assert reader["status"] == "running", reader
        assert _node_of(nomad_cluster, reader["id"]) != first_node  # the volume was made where the restore ran
        assert await _sh(client, "reader", FILES_SUM) == before
        for name in ("files", "reader"):
            await call(client, "delete_service", {"service": name, "confirm": True})
