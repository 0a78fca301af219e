"""Drift repaired by the reconciler: a lost container comes back, a crash loop opens the breaker, orphans go."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import docker
import docker.errors
import httpx
import pytest

from orchestrator.platform import instance_id

from .harness import AgentHost, call, connect, until, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def fast_host(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp("reconcile")))
    host.env = {"AGENTHOST_RECONCILE_INTERVAL_S": "1"}
    host.init()
    _ = host.url  # the HTTP server runs the reconciler
    yield host
    host.stop()
    host.cleanup_engine()


async def test_lost_container_is_recreated(
    fast_host: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    key = fast_host.tenant("drift")
    async with connect(fast_host, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "keeper", "image": hello_image, "port": 8000})
        docker_client.containers.get(f"ah-{svc['id']}").remove(force=True)

        def back() -> bool:
            try:
                return docker_client.containers.get(f"ah-{svc['id']}").status == "running"
            except docker.errors.NotFound:
                return False

        wait_for(back, 60, what="the reconciler to recreate the container")
        now = await until(client, "get_service", {"service": "keeper"}, lambda s: s["status"] == "running")
        assert httpx.get(now["url"], timeout=5).text == "hello world"
        await call(client, "delete_service", {"service": "keeper", "confirm": True})


async def test_crash_loop_opens_the_breaker(fast_host: AgentHost, hello_image: str) -> None:
    key = fast_host.tenant("loop")
    async with connect(fast_host, key, "http") as client:
        # Answers at first, then keeps crashing after a second.
        command = ["sh", "-c", "python3 /app/app.py & sleep 1.5; echo crash-loop-marker; exit 4"]
        svc = await call(
            client, "deploy_service", {"name": "flaky", "image": hello_image, "port": 8000, "command": command}
        )
        assert svc["status"] == "running"
        svc = await until(client, "get_service", {"service": "flaky"}, lambda s: s["status"] == "failed", 120)
        assert "crash-loop-marker" in svc["last_error"]
        status = await call(client, "platform_status")
        assert any(b.endswith("/flaky") for b in status["open_circuit_breakers"])
        reset = await call(client, "reset_service", {"service": "flaky"})
        assert reset["status"] == "running"
        status = await call(client, "platform_status")
        assert not any(b.endswith("/flaky") for b in status["open_circuit_breakers"])
        await call(client, "delete_service", {"service": "flaky", "confirm": True})


def test_orphan_container_is_removed(
    fast_host: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    instance = instance_id((fast_host.data_dir / "master.key").read_bytes())
    suffix = uuid.uuid4().hex[:8]
    labels = {
        "agenthost.managed": "true",
        "agenthost.instance": instance,
        "agenthost.id": f"svc_orphan{suffix}",
        "agenthost.kind": "service",
    }
    orphan = docker_client.containers.run(
        hello_image, name=f"ah-orphan-{suffix}", labels=labels, detach=True, runtime="runsc"
    )
    foreign = docker_client.containers.run(
        hello_image,
        name=f"ah-foreign-{suffix}",
        labels={**labels, "agenthost.instance": "someone-else"},
        detach=True,
        runtime="runsc",
    )
    try:

        def gone() -> bool:
            try:
                docker_client.containers.get(orphan.id)
                return False
            except docker.errors.NotFound:
                return True

        wait_for(gone, 60, what="the orphan to be removed")
        foreign.reload()
        assert foreign.status == "running"  # another platform's workload is not ours to remove
    finally:
        foreign.remove(force=True)


async def test_a_delete_that_died_half_way_is_finished(
    fast_host: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    key = fast_host.tenant("half-deleted")
    async with connect(fast_host, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "doomed", "image": hello_image, "port": 8000})
    db = sqlite3.connect(fast_host.data_dir / "agenthost.db")
    try:
        # What delete_service writes first: a delete in progress, which the reconciler leaves to its caller.
        with db:
            marked = (_ago(0), svc["id"])
            db.execute("UPDATE services SET desired_state = 'deleted', updated_at = ? WHERE id = ?", marked)
        await anyio.sleep(4)  # several passes at a 1 s interval
        assert docker_client.containers.get(f"ah-{svc['id']}").status == "running"
        # The same record minutes later: the process that deleted it died half-way; the reconciler finishes.
        with db:
            db.execute("UPDATE services SET updated_at = ? WHERE id = ?", (_ago(600), svc["id"]))

        def finished() -> bool:
            (rows,) = db.execute("SELECT COUNT(*) FROM services WHERE id = ?", (svc["id"],)).fetchone()
            return rows == 0 and not docker_client.containers.list(all=True, filters={"name": f"ah-{svc['id']}"})

        wait_for(finished, 60, what="the reconciler to finish the delete")
    finally:
        db.close()


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
