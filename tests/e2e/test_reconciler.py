"""Drift repaired by the reconciler: a lost container comes back, a crash loop opens the breaker, orphans go."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from orchestrator.platform import instance_id

from .harness import TEST_IMAGES_ENV, AgentHost, call, connect, until, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def fast_host(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp("reconcile")))
    host.env = {"AGENTHOST_RECONCILE_INTERVAL_S": "1", **TEST_IMAGES_ENV}
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
        assert httpx.get(now["internal_url"], timeout=5).text == "hello world"
        await call(client, "delete_service", {"service": "keeper", "confirm": True})


async def test_platform_status_counts_finished_passes_for_admins_only(fast_host: AgentHost) -> None:
    async with connect(fast_host, fast_host.admin_key, "http") as admin:
        first = (await call(admin, "platform_status"))["reconcile_passes"]
        assert isinstance(first, int)
        await until(admin, "platform_status", {}, lambda s: s["reconcile_passes"] > first)
    async with connect(fast_host, fast_host.tenant("counts"), "http") as client:
        assert (await call(client, "platform_status"))["reconcile_passes"] is None


# Answers from the moment it listens, and crashes two seconds later; again at every start. (A fixed delay
# from the start of the container left no time to answer when python was slow to start on a busy machine.)
ANSWERS_THEN_CRASHES = """
import http.server, os, threading
def crash():
    print("crash-loop-marker", flush=True)
    os._exit(4)
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8000), http.server.SimpleHTTPRequestHandler)
threading.Timer(2, crash).start()
server.serve_forever()
"""


async def test_crash_loop_opens_the_breaker(fast_host: AgentHost, hello_image: str) -> None:
    key = fast_host.tenant("loop")
    async with connect(fast_host, key, "http") as client:
        command = ["python3", "-c", ANSWERS_THEN_CRASHES]
        svc = await call(
            client, "deploy_service", {"name": "flaky", "image": hello_image, "port": 8000, "command": command}
        )
        assert svc["status"] == "running"
        svc = await until(client, "get_service", {"service": "flaky"}, lambda s: s["status"] == "failed", 120)
        assert "crash-loop-marker" in svc["last_error"]
        status = await call(client, "platform_status")
        assert any(b.endswith("/flaky") for b in status["open_circuit_breakers"])
        why = await call(client, "diagnose_service", {"service": "flaky"})
        assert why["status"] == "failed" and why["breaker_open"] and why["restarts"] >= 1, why
        assert "exited with code 4" in why["likely_cause"] and "start_service" in why["hint"], why
        assert "crash-loop-marker" in why["log_tail"] and "crash-loop-marker" not in why["likely_cause"], why
        reset = await call(client, "start_service", {"service": "flaky"})
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
        async with connect(fast_host, fast_host.admin_key, "http") as admin:
            with db:
                marked = (_ago(0), svc["id"])
                db.execute("UPDATE services SET desired_state = 'deleted', updated_at = ? WHERE id = ?", marked)
            before = (await call(admin, "platform_status"))["reconcile_passes"]
            # The pass running now may have read the record before the change: two more have surely seen it.
            await until(admin, "platform_status", {}, lambda s: s["reconcile_passes"] >= before + 2)
        assert docker_client.containers.get(f"ah-{svc['id']}").status == "running"
        # The same record minutes later: the process that deleted it died half-way; the reconciler finishes.
        with db:
            db.execute("UPDATE services SET updated_at = ? WHERE id = ?", (_ago(600), svc["id"]))

        def finished() -> bool:
            (rows,) = db.execute("SELECT COUNT(*) FROM services WHERE id = ?", (svc["id"],)).fetchone()
            return rows == 0 and not docker_client.containers.list(
                ignore_removed=True, all=True, filters={"name": f"ah-{svc['id']}"}
            )

        wait_for(finished, 60, what="the reconciler to finish the delete")
        # It was the tenant's last workload: the network pass gives its private network back.
        tenant_net = {"label": f"agenthost.tenant={fast_host.tenant_ids['half-deleted']}"}
        wait_for(lambda: not docker_client.networks.list(filters=tenant_net), 30, what="the network to go")
    finally:
        db.close()


def test_a_tenant_network_nothing_uses_is_removed(fast_host: AgentHost, docker_client: docker.DockerClient) -> None:
    """A tenant network whose tenant has no service or database (one an earlier version left behind) goes,
    and its subnet with it; another platform's stays."""
    suffix = uuid.uuid4().hex[:8]
    ours = {"agenthost.managed": "true", "agenthost.instance": fast_host.instance, "agenthost.tenant": f"t_{suffix}"}
    left = docker_client.networks.create(f"ah-net-t_{suffix}", driver="bridge", internal=True, labels=ours)
    foreign = docker_client.networks.create(
        f"ah-net-t_x{suffix}", driver="bridge", internal=True, labels={**ours, "agenthost.instance": "someone-else"}
    )
    try:
        wait_for(lambda: not docker_client.networks.list(names=[left.name]), 30, what="the unused network to go")
        assert [n.id for n in docker_client.networks.list(names=[foreign.name])] == [foreign.id]
    finally:
        foreign.remove()


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


async def test_attack_a_record_whose_repair_raises_does_not_stop_the_pass(
    fast_host: AgentHost, hello_image: str, docker_client: docker.DockerClient
) -> None:
    key = fast_host.tenant("bad-record")
    async with connect(fast_host, key, "http") as client:
        # Created first, so every pass reaches it before the others.
        bad = await call(
            client, "deploy_service", {"name": "bad", "image": hello_image, "port": 8000, "env": {"TOKEN": "t0k"}}
        )
        good = await call(client, "deploy_service", {"name": "good", "image": hello_image, "port": 8000})
    db = sqlite3.connect(fast_host.data_dir / "agenthost.db")
    try:
        # A record whose repair raises on every pass: its env cannot be decrypted (a damaged row), and its
        # container exited, so the reconciler reads its env to write the crash report.
        with db:
            db.execute("UPDATE env_vars SET value = ? WHERE service_id = ?", (b"\0" * 40, bad["id"]))
    finally:
        db.close()
    docker_client.containers.get(f"ah-{bad['id']}").kill()
    docker_client.containers.get(f"ah-{good['id']}").remove(force=True)
    suffix = uuid.uuid4().hex[:8]
    orphan = docker_client.containers.run(
        hello_image,
        name=f"ah-orphan-{suffix}",
        labels={
            "agenthost.managed": "true",
            "agenthost.instance": fast_host.instance,
            "agenthost.id": f"svc_orphan{suffix}",
            "agenthost.kind": "service",
        },
        detach=True,
        runtime="runsc",
    )

    def repaired() -> bool:
        try:
            running = docker_client.containers.get(f"ah-{good['id']}").status == "running"
        except docker.errors.NotFound:
            return False
        return running and not docker_client.containers.list(ignore_removed=True, all=True, filters={"id": orphan.id})

    wait_for(repaired, 60, what="the pass to recreate the other service and remove the orphan")
    log = fast_host.data_dir / "serve.log"
    logged = f"service {bad['id']} skipped, its repair failed"
    wait_for(lambda: logged in log.read_text(), 30, what="the failed repair to be logged with the record's id")
    async with connect(fast_host, key, "http") as client:
        now = await until(client, "get_service", {"service": "good"}, lambda s: s["status"] == "running")
        assert httpx.get(now["internal_url"], timeout=5).text == "hello world"
        await call(client, "delete_service", {"service": "good", "confirm": True})
        await call(client, "delete_service", {"service": "bad", "confirm": True})
