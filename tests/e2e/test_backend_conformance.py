"""One suite, unchanged, on every backend: the product (MCP tools) and the backend protocol behave alike.

Each test runs once on Docker and once on Nomad (a real `nomad agent -dev` with the docker driver).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from orchestrator.backends.base import Backend, VolumeSpec, WorkloadSpec, WorkloadStatus

from .harness import AgentHost, ToolFailed, call, connect
from .nomad_agent import backend_of

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

BACKENDS = ["docker", "nomad"]


@pytest.fixture(params=BACKENDS)
def host(request: pytest.FixtureRequest) -> AgentHost:
    fixture = "agenthost" if request.param == "docker" else "nomad_agenthost"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture
async def product_backend(host: AgentHost) -> AsyncIterator[Backend]:
    """The server's own backend (same instance), to look into workloads the tools made."""
    b = backend_of(host)
    yield b
    await b.close()


@pytest.fixture
async def backend(host: AgentHost) -> AsyncIterator[Backend]:
    """A backend of its own instance, for protocol-level tests (the server would remove their workloads)."""
    b = backend_of(host, f"conformance-{uuid.uuid4().hex[:8]}")
    yield b
    await b.close()


def _tenant(host: AgentHost, what: str) -> str:
    return host.tenant(f"{what}-{host.settings.backend}")


async def _answers(url: str, expected: str | None = None, timeout: float = 60) -> str:
    with anyio.fail_after(timeout):
        while True:
            try:
                async with httpx.AsyncClient(timeout=3) as client:
                    text = (await client.get(url)).text
                if expected is None or text == expected:
                    return text
            except httpx.HTTPError:
                pass
            await anyio.sleep(0.2)


async def _state(backend: Backend, workload_id: str, state: str, timeout: float = 90) -> WorkloadStatus:
    st = await backend.workload_status(workload_id)
    with anyio.move_on_after(timeout):
        while (st := await backend.workload_status(workload_id)).state != state:
            await anyio.sleep(0.2)
    assert st.state == state, f"{workload_id} did not reach {state} in {timeout} s: {st}"
    return st


async def test_service_lifecycle_env_logs_exec(host: AgentHost, product_backend: Backend, hello_image: str) -> None:
    key = _tenant(host, "conf-life")
    secret = f"s3cr3t-{uuid.uuid4().hex[:8]}"
    async with connect(host, key, "http") as client:
        svc = await call(
            client,
            "deploy_service",
            {"name": "web", "image": hello_image, "port": 8000, "env": {"GREETING": "conform", "TOKEN": secret}},
        )
        assert svc["status"] == "running", svc
        assert svc["url"].startswith("http://127.0.0.1:")
        assert await _answers(svc["url"]) == "hello conform"
        got = await call(client, "get_service", {"service": "web"})
        assert got["status"] == "running" and got["url"] == svc["url"]
        assert sorted(got["env_keys"]) == ["GREETING", "TOKEN"]

        run = await product_backend.exec(svc["id"], ["printenv", "TOKEN"], timeout_s=30)
        assert (run.exit_code, run.stdout.strip()) == (0, secret)
        run = await product_backend.exec(
            svc["id"],
            ["sh", "-c", 'pwd; echo "$EXTRA"; cat; echo oops >&2; exit 7'],
            stdin=b"from-stdin",
            env={"EXTRA": "x y"},
            workdir="/tmp",
            timeout_s=30,
        )
        assert run.exit_code == 7 and run.stdout == "/tmp\nx y\nfrom-stdin" and run.stderr == "oops\n"
        slow = await product_backend.exec(svc["id"], ["sleep", "30"], timeout_s=1)
        assert slow.timed_out and slow.exit_code is None

        await _answers(svc["url"])
        logs = await call(client, "service_logs", {"service": "web", "tail": 50})
        assert "hello app starting" in logs["output"]
        assert logs["output"].startswith("<<<UNTRUSTED WORKLOAD OUTPUT")

        stopped = await call(client, "stop_service", {"service": "web"})
        assert stopped["status"] == "stopped" and stopped["url"] is None
        with pytest.raises(httpx.HTTPError):
            httpx.get(svc["url"], timeout=3).raise_for_status()
        started = await call(client, "start_service", {"service": "web"})
        assert started["status"] == "running"
        assert await _answers(started["url"]) == "hello conform"
        restarted = await call(client, "restart_service", {"service": "web"})
        assert restarted["status"] == "running"
        assert await _answers(restarted["url"]) == "hello conform"

        rotated = f"rotated-{uuid.uuid4().hex[:8]}"
        env = await call(client, "set_env", {"service": "web", "vars": {"TOKEN": rotated}})
        assert env["vars"] == {"GREETING": "****", "TOKEN": "****"}
        run = await product_backend.exec(svc["id"], ["printenv", "TOKEN"], timeout_s=30)
        assert run.stdout.strip() == rotated
        await call(client, "unset_env", {"service": "web", "keys": ["TOKEN"]})
        run = await product_backend.exec(svc["id"], ["printenv", "TOKEN"], timeout_s=30)
        assert run.exit_code != 0 and run.stdout == ""

        deleted = await call(client, "delete_service", {"service": "web", "confirm": True})
        assert deleted["name"] == "web"
        assert (await product_backend.workload_status(svc["id"])).state == "missing"
        assert (await call(client, "list_services"))["services"] == []


async def test_crash_on_start_is_failed_with_log_tail(
    host: AgentHost, product_backend: Backend, hello_image: str
) -> None:
    key = _tenant(host, "conf-crash")
    async with connect(host, key, "stdio") as client:
        svc = await call(
            client,
            "deploy_service",
            {"name": "boom", "image": hello_image, "port": 8000, "command": ["sh", "-c", "echo kaboom >&2; exit 3"]},
        )
        assert svc["status"] == "failed"
        assert "exited with code 3" in svc["last_error"] and "kaboom" in svc["last_error"]
        await call(client, "delete_service", {"service": "boom", "confirm": True})
        assert (await product_backend.workload_status(svc["id"])).state == "missing"


async def test_missing_image_and_runtime_leave_nothing(host: AgentHost, product_backend: Backend) -> None:
    key = _tenant(host, "conf-refuse")
    async with connect(host, key, "stdio") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "ghost", "image": "ah-test/never-built:1", "port": 8000})
        assert err.value.code == "image_not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "dind", "image": "ah-test/hello:1", "runtime": "sysbox"})
        assert err.value.code == "runtime_unavailable"
        assert (await call(client, "list_services"))["services"] == []
    assert (
        await product_backend.list_workloads(
            {"agenthost.tenant": host.tenant_ids[f"conf-refuse-{host.settings.backend}"]}
        )
        == []
    )


async def test_platform_status_and_nodes(host: AgentHost) -> None:
    async with connect(host, host.admin_key, "stdio") as client:
        status = await call(client, "platform_status")
        assert status["backend"] == host.settings.backend and status["reachable"]
        cluster = status["cluster"]
        assert cluster["nodes_eligible"] >= 1 and "docker" in cluster["drivers"]
        assert "runsc" in cluster["runtimes"] and "runsc" in status["runtimes"]
        nodes = (await call(client, "list_nodes"))["nodes"]
        assert nodes and nodes[0]["memory_mb"] > 0 and "runsc" in nodes[0]["runtimes"]
    async with connect(host, _tenant(host, "conf-member"), "stdio") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "list_nodes")
        assert err.value.code == "forbidden"


async def test_database_like_workload_keeps_its_volume(
    host: AgentHost, backend: Backend, platform_images: object
) -> None:
    """A service workload with a volume (what databases need): data survives a restart and a re-create."""
    tid = f"t_conf{uuid.uuid4().hex[:8]}"
    volume = f"ah-{tid}-data"
    spec = WorkloadSpec(
        id=f"db_{uuid.uuid4().hex[:10]}",
        kind="database",
        tenant_id=tid,
        image=host.settings.image_base,
        command=["sleep", "3600"],
        user="0",
        memory_mb=64,
        cpus=0.25,
        runtime="runsc",
        health_check=None,
        volumes=[VolumeSpec(name=volume, path="/data")],
        labels={"agenthost.tenant": tid},
    )
    await backend.ensure_volume(volume, {"agenthost.tenant": tid})
    try:
        assert await backend.list_volumes({"agenthost.tenant": tid}) == [volume]
        assert await backend.volume_path_or_mount(volume)
        await backend.ensure_workload(spec)
        await _state(backend, spec.id, "running")
        assert (await backend.exec(spec.id, ["sh", "-c", "echo kept > /data/f"])).exit_code == 0
        await backend.restart_workload(spec.id)
        await _state(backend, spec.id, "running")
        assert (await backend.exec(spec.id, ["cat", "/data/f"])).stdout == "kept\n"
        assert await backend.remove_workload(spec.id)
        await backend.ensure_workload(spec)
        await _state(backend, spec.id, "running")
        assert (await backend.exec(spec.id, ["cat", "/data/f"])).stdout == "kept\n"
    finally:
        await backend.remove_workload(spec.id)
        await backend.remove_volume(volume)
    assert await backend.list_volumes({"agenthost.tenant": tid}) == []
    assert (await backend.workload_status(spec.id)).state == "missing"


async def test_sandbox_like_workload_has_no_network(host: AgentHost, backend: Backend, platform_images: object) -> None:
    """An ephemeral workload (batch on Nomad) with egress none and no ports: exec works, nothing leaks out."""
    tid = f"t_conf{uuid.uuid4().hex[:8]}"
    spec = WorkloadSpec(
        id=f"sbx_{uuid.uuid4().hex[:10]}",
        kind="sandbox",
        tenant_id=tid,
        image=host.settings.image_base,
        command=["sleep", "3600"],
        memory_mb=64,
        cpus=0.25,
        runtime="runsc",
        egress="none",
        restart="never",
        health_check=None,
        labels={"agenthost.tenant": tid},
    )
    try:
        await backend.ensure_workload(spec)
        await _state(backend, spec.id, "running")
        listed = await backend.list_workloads({"agenthost.tenant": tid})
        assert [w.id for w in listed] == [spec.id]
        run = await backend.exec(spec.id, ["sh", "-c", "grep -c : /proc/net/dev"])
        assert run.stdout.strip() == "1", run  # loopback only
    finally:
        await backend.remove_workload(spec.id)
    assert await backend.list_workloads({"agenthost.tenant": tid}) == []


async def test_build_image_then_run_it(host: AgentHost, backend: Backend, platform_images: object) -> None:
    """build_image on the engine (a batch job on Nomad), its log streamed, the image runnable; failures are clear."""
    tag = f"ah-test/conf-built:{uuid.uuid4().hex[:8]}"
    ctx = Path(tempfile.mkdtemp())
    (ctx / "Dockerfile").write_text(
        f'FROM {host.settings.image_base}\nUSER root\nRUN echo built-marker > /built\nCMD ["cat", "/built"]\n'
    )
    lines: list[str] = []

    async def on_log(line: str) -> None:
        lines.append(line)

    tid = f"t_conf{uuid.uuid4().hex[:8]}"
    spec = WorkloadSpec(
        id=f"job_{uuid.uuid4().hex[:10]}",
        kind="sandbox",
        tenant_id=tid,
        image=tag,
        command=["sleep", "3600"],
        memory_mb=64,
        cpus=0.25,
        runtime="runsc",
        egress="none",
        restart="never",
        health_check=None,
    )
    try:
        ref = await backend.build_image(ctx, "Dockerfile", tag, on_log, 512, 1.0, 300)
        assert ref.tag == tag and ref.digest and ref.digest.startswith("sha256:")
        assert any("built-marker" in line for line in lines), lines
        await backend.ensure_workload(spec)
        await _state(backend, spec.id, "running")
        assert (await backend.exec(spec.id, ["cat", "/built"])).stdout == "built-marker\n"
        with pytest.raises(Exception) as err:
            await backend.build_image(ctx, "Missing.Dockerfile", tag + "x", on_log, 256, 1.0, 120)
        assert getattr(err.value, "code", None) == "build_failed"
    finally:
        await backend.remove_workload(spec.id)
        await backend.remove_image(tag)
        import docker

        client = docker.from_env(version="auto")
        for t in (tag, tag + "x"):
            try:
                client.images.remove(t, force=True)
            except docker.errors.ImageNotFound:
                pass
        client.close()
