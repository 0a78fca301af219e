"""Backups on the three-node cluster: restic runs on the node that holds the volume, reaching the S3 repository
(moto on the host's bridge address, the only host address the nodes reach) over the node's own network; the
snapshot restores into a new volume on the other node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import AgentHost, call, connect
from .nomad_cluster import BRIDGE_HOST, Cluster, cluster_get, cluster_host
from .s3 import backup_env, moto_s3
from .test_backups import FILES_SUM
from .test_nomad_backups import _sh, until_running

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def cluster_s3_host(nomad_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    data_dir = Path(tmp_path_factory.mktemp("agenthost-cluster-s3"))
    with (
        moto_s3(BRIDGE_HOST, make_bucket=True) as endpoint,
        cluster_host(nomad_cluster, data_dir, **backup_env(endpoint)) as host,
    ):
        yield host


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
