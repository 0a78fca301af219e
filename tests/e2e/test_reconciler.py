"""Drift repaired by the reconciler: a lost container comes back, a crash loop opens the breaker, orphans go."""

from __future__ import annotations

import uuid
from pathlib import Path

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
