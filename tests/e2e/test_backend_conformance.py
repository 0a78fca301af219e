"""One suite, unchanged, on every backend: the product (MCP tools) and the backend protocol behave alike.

Each test runs on Docker and on the three-node Nomad cluster (infra/nomad-testcluster.sh: ACLs, mTLS, images
by digest from its TLS registry).
"""

from __future__ import annotations

import uuid

import anyio
import httpx
import pytest

from orchestrator.backends.base import Backend, ExecSpec, VolumeSpec, WorkloadSpec

from .conformance import answers, body, pool_ready, service_address, sh, state, tenant
from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_service_lifecycle_env_logs_exec(
    host: AgentHost, product_backend: Backend, platform_hello_image: str
) -> None:
    key = tenant(host, "conf-life")
    secret = f"s3cr3t-{uuid.uuid4().hex[:8]}"
    async with connect(host, key, "http") as client:
        svc = await call(
            client,
            "deploy_service",
            {
                "name": "web",
                "image": platform_hello_image,
                "port": 8000,
                "env": {"GREETING": "conform", "TOKEN": secret},
            },
        )
        assert svc["status"] == "running", svc
        assert svc["internal_url"].startswith(f"http://{service_address(host, svc['id'])}:")
        assert await answers(svc["internal_url"]) == "hello conform"
        got = await call(client, "get_service", {"service": "web"})
        assert got["status"] == "running" and got["internal_url"] == svc["internal_url"]
        assert sorted(got["env_keys"]) == ["GREETING", "TOKEN"]

        run = await product_backend.exec(svc["id"], ExecSpec(["printenv", "TOKEN"], timeout_s=30))
        assert (run.exit_code, run.stdout.strip()) == (0, secret)
        run = await product_backend.exec(
            svc["id"],
            ExecSpec(
                ["sh", "-c", 'pwd; echo "$EXTRA"; cat; echo oops >&2; exit 7'],
                stdin=b"from-stdin",
                env={"EXTRA": "x y"},
                workdir="/tmp",
                timeout_s=30,
            ),
        )
        assert run.exit_code == 7 and run.stdout == "/tmp\nx y\nfrom-stdin" and run.stderr == "oops\n"
        slow = await product_backend.exec(svc["id"], ExecSpec(["sleep", "30"], timeout_s=1))
        assert slow.timed_out and slow.exit_code is None

        # The same through the exec tool: the secret masked in the output, stdin, env, workdir, deadline.
        run = await call(client, "exec", {"service": "web", "command": ["printenv", "TOKEN"]})
        assert (run["exit_code"], body(run["stdout"]), run["target"]) == (0, "****\n", "service web")
        run = await call(
            client,
            "exec",
            {
                "service": "web",
                "command": 'pwd; cat; echo "$EXTRA" >&2; exit 3',
                "stdin": "from-stdin",
                "env": {"EXTRA": "x y"},
                "workdir": "/tmp",
            },
        )
        assert (run["exit_code"], body(run["stdout"]), body(run["stderr"])) == (3, "/tmp\nfrom-stdin", "x y\n")
        sleeper = {"service": "web", "command": ["sleep", "30"], "timeout_s": 1}
        run = await call(client, "exec", sleeper)
        assert run["timed_out"] and run["exit_code"] is None and "timed out" in run["note"], run
        with pytest.raises(ToolFailed) as err:
            await call(client, "exec", {"service": "nope", "command": ["true"]})
        assert err.value.code == "not_found"

        await answers(svc["internal_url"])
        logs = await call(client, "service_logs", {"service": "web", "tail": 50})
        assert "hello app starting" in logs["output"]
        assert logs["output"].startswith("<<<UNTRUSTED WORKLOAD OUTPUT")

        stopped = await call(client, "stop_service", {"service": "web"})
        assert stopped["status"] == "stopped" and stopped["internal_url"] is None
        with pytest.raises(httpx.HTTPError):
            httpx.get(svc["internal_url"], timeout=3).raise_for_status()
        with pytest.raises(ToolFailed) as err:
            await call(client, "exec", {"service": "web", "command": ["true"]})
        assert err.value.code == "invalid_input" and "not running" in err.value.message
        started = await call(client, "start_service", {"service": "web"})
        assert started["status"] == "running"
        assert await answers(started["internal_url"]) == "hello conform"
        restarted = await call(client, "restart_service", {"service": "web"})
        assert restarted["status"] == "running"
        assert await answers(restarted["internal_url"]) == "hello conform"

        rotated = f"rotated-{uuid.uuid4().hex[:8]}"
        env = await call(client, "set_env", {"service": "web", "vars": {"TOKEN": rotated}})
        assert env["vars"] == {"GREETING": "****", "TOKEN": "****"}
        run = await product_backend.exec(svc["id"], ExecSpec(["printenv", "TOKEN"], timeout_s=30))
        assert run.stdout.strip() == rotated
        await call(client, "unset_env", {"service": "web", "keys": ["TOKEN"]})
        run = await product_backend.exec(svc["id"], ExecSpec(["printenv", "TOKEN"], timeout_s=30))
        assert run.exit_code != 0 and run.stdout == ""

        deleted = await call(client, "delete_service", {"service": "web", "confirm": True})
        assert deleted["name"] == "web"
        assert (await product_backend.workload_status(svc["id"])).state == "missing"
        assert (await call(client, "list_services"))["services"] == []


NET_PROBE = """
import os, socket, sys
print("ifaces", sorted(os.listdir("/sys/class/net")))
for host, port in [("127.0.0.1", int(sys.argv[1])), ("web", 8000)]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print("reached", host)
    except OSError as exc:
        print("blocked", host, type(exc).__name__)
"""


async def test_sandboxes_from_the_pool_exec_list_delete(
    host: AgentHost, product_backend: Backend, platform_hello_image: str
) -> None:
    key = tenant(host, "conf-sbx")
    async with connect(host, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": platform_hello_image, "port": 8000})
        assert svc["status"] == "running", svc
        first = await call(client, "create_sandbox", {"name": "first"})  # the first ask warms the pool
        await pool_ready(host)
        sbx = await call(client, "create_sandbox", {"name": "scratch"})
        assert sbx["from_pool"] is True and sbx["status"] == "running" and sbx["network"] == "none", sbx
        assert (await product_backend.workload_status(sbx["id"])).state == "running"

        code, out, _ = await sh(client, "python3 -c 'print(6 * 7)'; pwd; echo kept > f; cat f", sandbox="scratch")
        assert (code, out) == (0, "42\n/workspace\nkept\n")
        run = await call(client, "exec", {"sandbox": "scratch", "command": ["touch", "/etc/x"]})
        assert run["exit_code"] != 0 and run["target"] == "sandbox scratch", "the image itself is read-only"
        run = await call(client, "exec", {"sandbox": "scratch", "command": ["sleep", "30"], "timeout_s": 1})
        assert run["timed_out"] and run["exit_code"] is None

        # Network none: loopback only, so even the tenant's own service is out of reach.
        port = svc["internal_url"].rsplit(":", 1)[1]
        run = await call(client, "exec", {"sandbox": "scratch", "command": ["python3", "-c", NET_PROBE, port]})
        out = body(run["stdout"])
        assert run["exit_code"] == 0 and "ifaces ['lo']" in out, run
        assert "reached" not in out and out.count("blocked") == 2, out
        online = await call(client, "create_sandbox", {"name": "online", "network": "egress"})
        assert online["network"] == "egress" and online["from_pool"] is False
        code, out, err = await sh(
            client, "python3 -c 'import os; print(os.listdir(\"/sys/class/net\"))'", sandbox="online"
        )
        assert code == 0 and "eth0" in out, (out, err)  # an egress sandbox has an interface: the probe tells apart

        listed = await call(client, "list_sandboxes")
        assert sorted(s["name"] for s in listed["sandboxes"]) == ["first", "online", "scratch"]
        with pytest.raises(ToolFailed) as err:
            await call(client, "delete_sandbox", {"sandbox": "scratch"})
        assert err.value.code == "confirmation_required"
        for ref in ("scratch", "online", first["id"]):
            await call(client, "delete_sandbox", {"sandbox": ref, "confirm": True})
        for gone in (sbx, online, first):
            assert (await product_backend.workload_status(gone["id"])).state == "missing"
        assert (await call(client, "list_sandboxes"))["sandboxes"] == []
        with pytest.raises(ToolFailed) as err:
            await call(client, "exec", {"sandbox": "scratch", "command": ["true"]})
        assert err.value.code == "not_found"
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_crash_on_start_is_failed_with_log_tail(
    host: AgentHost, product_backend: Backend, platform_hello_image: str
) -> None:
    key = tenant(host, "conf-crash")
    async with connect(host, key, "stdio") as client:
        svc = await call(
            client,
            "deploy_service",
            {
                "name": "boom",
                "image": platform_hello_image,
                "port": 8000,
                "command": ["sh", "-c", "echo kaboom >&2; exit 3"],
            },
        )
        assert svc["status"] == "failed"
        assert "exited with code 3" in svc["last_error"] and "kaboom" in svc["last_error"]
        await call(client, "delete_service", {"service": "boom", "confirm": True})
        assert (await product_backend.workload_status(svc["id"])).state == "missing"


async def test_missing_image_and_runtime_leave_nothing(host: AgentHost, product_backend: Backend) -> None:
    key = tenant(host, "conf-refuse")
    async with connect(host, key, "stdio") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "ghost", "image": "ah-test/never-built:1", "port": 8000})
        assert err.value.code == "image_not_found"
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": "dind", "image": "ah-test/hello:1", "runtime": "sysbox"})
        assert err.value.code == "runtime_unavailable"
        assert (await call(client, "list_services"))["services"] == []
    assert (
        await product_backend.list_workloads({"agenthost.tenant": host.tenant_ids[f"conf-refuse-{host.platform}"]})
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
    async with connect(host, tenant(host, "conf-member"), "stdio") as client:
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
        await state(backend, spec.id, "running")
        assert (await backend.exec(spec.id, ExecSpec(["sh", "-c", "echo kept > /data/f"]))).exit_code == 0
        await backend.restart_workload(spec.id)
        await state(backend, spec.id, "running")
        assert (await backend.exec(spec.id, ExecSpec(["cat", "/data/f"]))).stdout == "kept\n"
        assert await backend.remove_workload(spec.id)
        await backend.ensure_workload(spec)
        await state(backend, spec.id, "running")
        assert (await backend.exec(spec.id, ExecSpec(["cat", "/data/f"]))).stdout == "kept\n"
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
        await state(backend, spec.id, "running")
        listed = await backend.list_workloads({"agenthost.tenant": tid})
        assert [w.id for w in listed] == [spec.id]
        run = await backend.exec(spec.id, ExecSpec(["sh", "-c", "grep -c : /proc/net/dev"]))
        assert run.stdout.strip() == "1", run  # loopback only
    finally:
        await backend.remove_workload(spec.id)
    assert await backend.list_workloads({"agenthost.tenant": tid}) == []


async def test_logs_follow_both_streams(host: AgentHost, backend: Backend, platform_images: object) -> None:
    """logs(follow=True): the tail first, then lines of stdout and stderr as the workload writes them."""
    tid = f"t_conf{uuid.uuid4().hex[:8]}"
    script = 'i=0; while :; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; sleep 0.2; done'
    spec = WorkloadSpec(
        id=f"sbx_{uuid.uuid4().hex[:10]}",
        kind="sandbox",
        tenant_id=tid,
        image=host.settings.image_base,
        command=["sh", "-c", script],
        memory_mb=64,
        cpus=0.25,
        runtime="runsc",
        egress="none",
        restart="never",
        health_check=None,
        labels={"agenthost.tenant": tid},
    )
    seen: list[str] = []
    try:
        await backend.ensure_workload(spec)
        await state(backend, spec.id, "running")
        with anyio.fail_after(60):
            async for line in backend.logs(spec.id, tail=1, follow=True):
                seen.append(line.text)
                if sum(t.startswith("out ") for t in seen) >= 5 and sum(t.startswith("err ") for t in seen) >= 5:
                    break
    finally:
        await backend.remove_workload(spec.id)
    counts = [int(t.split()[1]) for t in seen if t.startswith("out ")]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), seen  # in order, nothing twice
