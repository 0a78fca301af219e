"""What only the Nomad backend has to prove, against a real Nomad dev agent: secrets stay out of job
definitions, agent input cannot inject into the job, node eligibility really changes the node, and
two platforms on one cluster keep their workloads apart."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from orchestrator.backends.base import ExecSpec, WorkloadSpec
from orchestrator.backends.nomad import NomadBackend
from orchestrator.backends.nomad.allocs import register_job
from orchestrator.backends.nomad.api import NomadApi
from orchestrator.backends.nomad.jobs import job_template, job_variables, parse_job
from orchestrator.backends.nomad.net import TenantNetworks
from orchestrator.backends.nomad.vars import delete_variable, put_variable
from orchestrator.errors import AgentHostError

from .harness import AgentHost, ToolFailed, call, connect, free_port, until, wait_for
from .nomad_agent import NOMAD_ADDR, backend_of, job_json, nomad_get

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_submitted_job_holds_no_secret(nomad_agenthost: AgentHost, hello_image: str) -> None:
    host = nomad_agenthost
    secret = f"pw-{uuid.uuid4().hex}"
    async with connect(host, host.tenant("nomad-secret"), "http") as client:
        svc = await call(
            client,
            "deploy_service",
            {"name": "api", "image": hello_image, "port": 8000, "env": {"DB_PASSWORD": secret}},
        )
        assert svc["status"] == "running", svc
        job_id = f"ah-{svc['id']}"
        stored = job_json(job_id)
        assert secret not in stored
        assert "DB_PASSWORD" not in stored  # not even the name: the template reads the Variable
        assert nomad_get(f"var/nomad/jobs/{job_id}")["Items"]["DB_PASSWORD"] == secret
        backend = backend_of(host)
        try:
            run = await backend.exec(svc["id"], ExecSpec(["printenv", "DB_PASSWORD"]))
        finally:
            await backend.close()
        assert run.stdout.strip() == secret
        await call(client, "set_env", {"service": "api", "vars": {"DB_PASSWORD": secret + "-2"}})
        assert secret not in job_json(job_id)
        await call(client, "delete_service", {"service": "api", "confirm": True})
    with pytest.raises(httpx.HTTPStatusError):
        nomad_get(f"var/nomad/jobs/{job_id}")


async def test_injection_in_name_env_or_image_is_rejected_or_inert(
    nomad_agenthost: AgentHost, hello_image: str
) -> None:
    host = nomad_agenthost
    hostile = {
        "HCL": '"\n}\ntask "evil" {\n  driver = "raw_exec"\n',
        "INTERP": "${node.unique.name} ${attr.kernel.name} ${NOMAD_ALLOC_ID}",
        "TMPL": '{{ env "HOME" }} {{ with nomadVar "nomad/jobs" }}x{{ end }}',
        "NEWLINE": "first\nINJECTED=1",
        "QUOTES": "a\"b'c\\d $(id) `id`",
    }
    async with connect(host, host.tenant("nomad-inject"), "http") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "deploy_service", {"name": 'web"}\njob "x', "image": hello_image})
        assert "name" in err.value.message and "pattern" in err.value.message, err.value  # refused by the schema
        for image in (hello_image + '"\n}', "ah-test/hello:${attr.kernel.name}", "ah-test/hello:1 --privileged"):
            with pytest.raises(ToolFailed) as err:
                await call(client, "deploy_service", {"name": "badimg", "image": image})
            assert err.value.code == "invalid_input", image
        with pytest.raises(ToolFailed) as err:
            await call(
                client,
                "deploy_service",
                {"name": "badcmd", "image": hello_image, "command": ["sh", "-c", "echo ${attr.unique.hostname}"]},
            )
        assert err.value.code == "invalid_input"

        svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000, "env": hostile})
        assert svc["status"] == "running", svc
        job = nomad_get(f"job/ah-{svc['id']}")
        # The agent's workload, and the platform's prestart task that makes the tenant network: nothing else.
        tasks = {t["Name"]: t for g in job["TaskGroups"] for t in g["Tasks"]}
        assert sorted(tasks) == ["main", "net"] and {t["Driver"] for t in tasks.values()} == {"docker"}
        assert tasks["net"]["Lifecycle"]["Hook"] == "prestart" and tasks["net"]["Config"]["network_mode"] == "none"
        assert tasks["net"]["Config"]["image"] == host.settings.image_python
        assert tasks["net"]["Config"]["args"][:2] == ["python3", "-c"] and "web" not in tasks["net"]["Config"]["args"]
        assert tasks["main"]["Config"]["network_aliases"] == ["web"]
        backend = backend_of(host)
        try:
            for key, value in hostile.items():
                run = await backend.exec(svc["id"], ExecSpec(["printenv", key]))
                assert run.stdout == value + "\n", (key, run)
            assert (await backend.exec(svc["id"], ExecSpec(["printenv", "INJECTED"]))).exit_code != 0
        finally:
            await backend.close()
        assert (await call(client, "list_services"))["services"][0]["name"] == "web"
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_exec_whose_task_goes_away_says_the_session_was_lost(
    nomad_agenthost: AgentHost, hello_image: str
) -> None:
    """When the task under an exec goes away (a restart here; a crashed gVisor sandbox in the wild) Nomad ends
    the exec's stream without an exit status (by a close frame or by dropping the connection), or with the
    137 of the killed command: the exec tool says which, never that the engine is unreachable, and the
    service runs again."""
    host = nomad_agenthost
    key = host.tenant("nomad-lost")
    started = f"/tmp/exec-started-{uuid.uuid4().hex[:8]}"
    result: dict[str, dict[str, Any]] = {}
    async with connect(host, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
        assert svc["status"] == "running", svc

        async def silent_exec() -> None:  # no output: nothing tells a lost session from a dead engine but the note
            args = {"service": "web", "command": f"touch {started}; exec sleep 300", "timeout_s": 240}
            result["exec"] = await call(client, "exec", args)

        async with anyio.create_task_group() as tg:
            tg.start_soon(silent_exec)
            running = {"service": "web", "command": ["test", "-e", started]}
            await until(client, "exec", running, lambda r: r["exit_code"] == 0)
            restarted = await call(client, "restart_service", {"service": "web"})
        run = result["exec"]
        assert not run["timed_out"] and run["stdout"] == "", run
        # Whether Nomad delivers the exit status of a command killed with its task or drops the stream first
        # is the engine's race; either way the tool says what happened.
        if run["exit_code"] is None:
            assert "the session was lost (the service web stopped or restarted" in run["note"], run
        else:
            assert run["exit_code"] == 137 and "killed with SIGKILL" in run["note"], run
            assert "the service web stopped or restarted" in run["note"], run
        assert restarted["status"] == "running", restarted
        again = await call(client, "exec", {"service": "web", "command": ["test", "-e", started]})
        assert again["exit_code"] == 1 and again["note"] is None, again  # a new task, a fresh /tmp
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_set_node_eligibility_changes_the_node(nomad_agenthost: AgentHost, hello_image: str) -> None:
    host = nomad_agenthost
    node_id = nomad_get("nodes")[0]["ID"]
    async with connect(host, host.admin_key, "http") as admin:
        try:
            node = await call(admin, "set_node_eligibility", {"node": node_id[:8], "eligible": False})
            assert node["id"] == node_id and node["eligible"] is False
            assert nomad_get(f"node/{node_id}")["SchedulingEligibility"] == "ineligible"
            status = await call(admin, "platform_status")
            assert status["cluster"]["nodes_eligible"] == 0
            assert any("no node accepts new work" in n for n in status["notes"])
            async with connect(host, host.tenant("nomad-drain"), "stdio") as member:
                with pytest.raises(ToolFailed) as err:
                    await call(member, "set_node_eligibility", {"node": node_id, "eligible": True})
                assert err.value.code == "forbidden"
                with pytest.raises(ToolFailed) as err:
                    await call(member, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
                assert err.value.code == "runtime_unavailable"
                assert (await call(member, "list_services"))["services"] == []
        finally:
            node = await call(admin, "set_node_eligibility", {"node": node_id, "eligible": True})
        assert node["eligible"] is True
        assert nomad_get(f"node/{node_id}")["SchedulingEligibility"] == "eligible"
        with pytest.raises(ToolFailed) as err:
            await call(admin, "set_node_eligibility", {"node": "no-such-node", "eligible": True})
        assert err.value.code == "not_found"


async def test_two_platforms_on_one_cluster_keep_apart(nomad_agenthost: AgentHost, hello_image: str) -> None:
    host = nomad_agenthost
    other = NomadBackend(NomadApi(NOMAD_ADDR, None, "default", None), "another-instance", ["*"], "default")
    async with connect(host, host.tenant("nomad-apart"), "stdio") as client:
        svc = await call(client, "deploy_service", {"name": "mine", "image": hello_image, "port": 8000})
        try:
            assert svc["id"] not in {w.id for w in await other.list_workloads({})}
            assert (await other.workload_status(svc["id"])).state == "missing"
            assert not await other.remove_workload(svc["id"])
            assert nomad_get(f"job/ah-{svc['id']}")["Status"] != "dead"
        finally:
            await other.close()
            await call(client, "delete_service", {"service": "mine", "confirm": True})


async def test_job_carries_the_isolation_defaults(nomad_agenthost: AgentHost, hello_image: str) -> None:
    host = nomad_agenthost
    async with connect(host, host.tenant("nomad-defaults"), "stdio") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000, "memory_mb": 96})
        job = nomad_get(f"job/ah-{svc['id']}")
        task = next(t for t in job["TaskGroups"][0]["Tasks"] if t["Name"] == "main")
        config = task["Config"]
        assert config["runtime"] == "runsc" and config["readonly_rootfs"] is True
        assert config["cap_drop"] == ["all"] and config["security_opt"] == ["no-new-privileges"]
        assert config["pids_limit"] > 0
        # A tenth of the cpus reserved, no cap above it; memory_mb the hard limit (docs/backends.md).
        assert config["cpu_hard_limit"] is False and task["Resources"]["CPU"] < 0.5 * node_mhz_per_core()
        if nomad_get("operator/scheduler/configuration")["SchedulerConfig"]["MemoryOversubscriptionEnabled"]:
            assert (task["Resources"]["MemoryMB"], task["Resources"]["MemoryMaxMB"]) == (48, 96)
        else:
            assert (task["Resources"]["MemoryMB"], task["Resources"]["MemoryMaxMB"]) == (96, 0)
        assert {m["target"] for m in config["mount"]} >= {"/tmp", "/run", "/var/tmp"}
        assert job["TaskGroups"][0]["RestartPolicy"]["Mode"] == "fail"
        assert job["TaskGroups"][0]["Services"][0]["Checks"][0]["Type"] == "http"
        assert job["Meta"]["agenthost.tenant"] == host.tenant_ids["nomad-defaults"]
        alloc = [a for a in nomad_get("allocations", resources="true") if a["JobID"] == job["ID"]][-1]
        port = alloc["AllocatedResources"]["Shared"]["Ports"][0]
        assert port["HostIP"] == "127.0.0.1" and svc["internal_url"] == f"http://127.0.0.1:{port['Value']}"
        # The instance is the job's (in Meta); the workload's own task carries no platform label.
        assert job["Meta"]["agenthost.instance"] == host.instance and "agenthost.instance" not in json.dumps(task)
        await call(client, "delete_service", {"service": "web", "confirm": True})


def node_mhz_per_core() -> float:
    (stub,) = [n for n in nomad_get("nodes") if n["Status"] == "ready"]
    cpu = nomad_get(f"node/{stub['ID']}")["NodeResources"]["Cpu"]
    return float(cpu["CpuShares"]) / cpu["TotalCpuCores"]


def test_cluster_configs_render_and_validate(nomad_agent: str, tmp_path: Path) -> None:
    """The 3-server + N-client configs infra/nomad-cluster.sh installs are valid Nomad agent configs."""
    repo = Path(__file__).resolve().parents[2]
    binary = subprocess.run(
        ["bash", "infra/nomad.sh", "binary"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    servers = "10.9.0.1,10.9.0.2,10.9.0.3"
    key = base64.b64encode(os.urandom(32)).decode()
    for role, extra in (
        ("server", ["--gossip-key", key]),
        ("client", ["--iface", "eth0", "--runtimes", "runc,runsc,sysbox-runc"]),
    ):
        out = tmp_path / role
        subprocess.run(
            [
                "bash",
                "infra/nomad-cluster.sh",
                "render",
                role,
                "--addr",
                "10.9.0.9",
                "--servers",
                servers,
                "--out",
                str(out),
                *extra,
            ],
            cwd=repo,
            check=True,
            capture_output=True,
        )
        text = (out / f"{role}.hcl").read_text()
        assert "__" not in text and '"10.9.0.2"' in text
        checked = subprocess.run([binary, "config", "validate", str(out)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    server = (tmp_path / "server" / "server.hcl").read_text()
    assert f'encrypt          = "{key}"' in server and "verify_https_client    = true" in server
    client = (tmp_path / "client" / "client.hcl").read_text()
    assert (
        '"driver.allowlist" = "docker"' in client and 'allow_caps       = ["chown", "dac_override", "fowner"]' in client
    )
    assert '"agenthost.runtimes"       = "runc,runsc,sysbox-runc"' in client
    assert 'allow_runtimes = ["runc", "runsc", "sysbox-runc"]' in client


def test_acl_policy_grants_what_the_backend_uses(nomad_agent: str, tmp_path: Path) -> None:
    """nomad/agenthost-policy.hcl is valid on the Nomad we build, and a token with only that policy does what
    the backend does in the namespace agenthost, and nothing in another: parse and submit jobs, its Variables,
    nodes, agent info (on a server with ACLs on)."""
    repo = Path(__file__).resolve().parents[2]
    binary = subprocess.run(
        ["bash", "infra/nomad.sh", "binary"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    http, rpc, serf = free_port(), free_port(), free_port()
    (tmp_path / "acl.hcl").write_text(
        f'data_dir = "{tmp_path / "data"}"\nbind_addr = "127.0.0.1"\ndisable_update_check = true\n'
        f"ports {{\n  http = {http}\n  rpc = {rpc}\n  serf = {serf}\n}}\n"
        'advertise {\n  http = "127.0.0.1"\n  rpc = "127.0.0.1"\n  serf = "127.0.0.1"\n}\n'
        "server {\n  enabled = true\n  bootstrap_expect = 1\n}\nacl {\n  enabled = true\n}\n"
    )
    addr = f"http://127.0.0.1:{http}"
    with (tmp_path / "agent.log").open("wb") as log:
        agent = subprocess.Popen([binary, "agent", "-config", str(tmp_path / "acl.hcl")], stdout=log, stderr=log)
    try:
        wait_for(lambda: _leader(addr, agent, tmp_path / "agent.log"), timeout=60, what="the ACL server's leader")
        boot = httpx.post(f"{addr}/v1/acl/bootstrap", timeout=30).raise_for_status().json()
        admin = {"X-Nomad-Token": boot["SecretID"]}
        rules = (repo / "nomad" / "agenthost-policy.hcl").read_text()
        policy = {"Name": "agenthost", "Rules": rules}
        applied = httpx.post(f"{addr}/v1/acl/policy/agenthost", json=policy, headers=admin, timeout=30)
        assert applied.status_code == 200, applied.text
        wanted = {"Name": "agenthost", "Type": "client", "Policies": ["agenthost"]}
        made = httpx.post(f"{addr}/v1/acl/token", json=wanted, headers=admin, timeout=30).raise_for_status()
        token = made.json()["SecretID"]
        created = httpx.post(f"{addr}/v1/namespace/agenthost", json={"Name": "agenthost"}, headers=admin, timeout=30)
        assert created.status_code == 200, created.text

        api = NomadApi(addr, token, "agenthost", None)
        try:
            assert api.get("agent", "self")["config"]["Version"]["Version"] == "1.6.1"
            assert api.get("nodes") == []
            for path in ("agenthost/acl/volumes/ah-t_1-data", "nomad/jobs/ah-svc_acl"):
                put_variable(api, path, {"k": "v"})
                assert [v["Path"] for v in api.get("vars", params={"prefix": path})] == [path]
                delete_variable(api, path)
            nets = TenantNetworks(helper_image="agenthost/python:bookworm", instance="acl")
            spec = WorkloadSpec(
                id="svc_acl", kind="service", tenant_id="t_1", image="app:1", memory_mb=64, cpus=0.25, runtime="runsc"
            )
            values = job_variables(spec, cpu_mhz_per_core=2000, datacenters=["*"], node_pool="default", nets=nets)
            job = parse_job(api, job_template(), values, "ah-svc_acl", {"agenthost.instance": "acl"})
            eval_id, version = register_job(api, job)
            assert eval_id and version == 0 and api.get("job", "ah-svc_acl")["Meta"] == {"agenthost.instance": "acl"}
            api.delete("job", "ah-svc_acl", params={"purge": "true"})
            with pytest.raises(AgentHostError) as err:  # the token is no management token
                put_variable(api, "elsewhere/x", {"k": "v"})
            assert "denied" in err.value.message
        finally:
            api.close()
        default = NomadApi(addr, token, "default", None)  # nor does it reach beyond its namespace
        try:
            with pytest.raises(AgentHostError) as err:
                parse_job(default, job_template(), values, "ah-svc_acl", {"agenthost.instance": "acl"})
            assert "denied" in err.value.message
        finally:
            default.close()
    finally:
        agent.terminate()
        agent.wait(timeout=60)


def _leader(addr: str, agent: subprocess.Popen[bytes], log: Path) -> bool:
    assert agent.poll() is None, f"the Nomad agent exited: {log.read_text()[-2000:]}"
    try:
        return bool(httpx.get(f"{addr}/v1/status/leader", timeout=2).json())
    except (httpx.HTTPError, ValueError):
        return False


async def test_a_local_backup_is_refused_clearly(nomad_agenthost: AgentHost) -> None:
    """On Nomad restic runs on the node that holds the data, which cannot reach the control plane's local
    repository: a backup to it is refused with what to do instead, and nothing is made (S3 backups on Nomad:
    test_nomad_backups.py)."""
    host = nomad_agenthost
    async with connect(host, host.tenant("nomad-backup"), "stdio") as client:
        db = await call(client, "create_database", {"name": "cache", "engine": "redis", "memory_mb": 64})
        assert db["status"] == "running", db
        for what in ({"database": "cache"}, {"volume": "data"}):
            with pytest.raises(ToolFailed) as err:
                await call(client, "create_backup", {**what, "target": "local"})
            assert err.value.code == "invalid_input" and "target='s3'" in (err.value.hint or ""), err.value
        assert (await call(client, "list_backups"))["backups"] == []
        await call(client, "delete_database", {"database": "cache", "confirm": True})
    assert not (host.data_dir / "restic").exists()
