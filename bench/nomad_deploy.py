"""deploy_service on Nomad against submitting the equivalent job to Nomad directly.

Both sides do the same work, side by side in one run: a job with the same definition (the one
agenthost submitted, read back from Nomad) and the same env Variable, registered, placed, started,
and waited for until its published port answers HTTP. agenthost's side is one MCP call over HTTP
(`deploy_service`, wait=true), so it also pays for validation, the store, the Variable write and
the parse of the HCL template.

    .venv/bin/python bench/nomad_deploy.py [--rounds 7] [--cluster]
(starts the dev agent with infra/nomad.sh when it is not running, and stops it again afterwards; with
--cluster, the three-node test cluster of infra/nomad-testcluster.sh instead: ACLs and mTLS on, both sides
with agenthost's token and certificate in its namespace, the app in the platform's python image from the
cluster's registry by digest, each job's port answering on its node's address)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import docker
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.settings import Settings  # noqa: E402
from tests.e2e.harness import AgentHost, call, connect  # noqa: E402
from tests.e2e.nomad_agent import NOMAD_ADDR, start_dev_agent, stop_dev_agent  # noqa: E402
from tests.e2e.nomad_cluster import cluster_env, operator_client, push_images, start_cluster, stop_cluster  # noqa: E402

IMAGE = "ah-bench/hello:1"
APP = textwrap.dedent(
    """
    import http.server
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
    """
)


def build_image() -> None:
    client = docker.from_env(version="auto")
    with tempfile.TemporaryDirectory() as ctx:
        (Path(ctx) / "app.py").write_text(APP)
        (Path(ctx) / "Dockerfile").write_text(
            'FROM agenthost/python:bookworm\nCOPY app.py /app.py\nCMD ["python3", "/app.py"]\n'
        )
        client.images.build(path=ctx, tag=IMAGE, rm=True, pull=False)
    client.close()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def raw_deploy(nomad: httpx.Client, template: dict[str, Any], env: dict[str, str], n: int) -> float:
    """Register the job directly, wait until its port answers; return seconds. ``nomad``: a client of the API's
    /v1/ in the job's namespace."""
    job = copy.deepcopy(template)
    jid = f"ah-bench-raw-{n}"  # agenthost's token may write the env Variables of jobs named ah-* only
    job.update({"ID": jid, "Name": jid, "Stop": False})
    job["Meta"].pop("agenthost.instance", None)  # not the platform's: its reconciler leaves it alone
    for key in ("Version", "CreateIndex", "ModifyIndex", "JobModifyIndex", "SubmitTime", "Status"):
        job.pop(key, None)
    started = time.monotonic()
    path = f"nomad/jobs/{jid}"
    nomad.put(f"var/{path}", json={"Path": path, "Items": env}).raise_for_status()
    nomad.post("jobs", json={"Job": job}).raise_for_status()
    deadline = started + 120
    url = None
    while time.monotonic() < deadline:
        if url is None:
            allocs = nomad.get("allocations", params={"resources": "true", "filter": f'JobID == "{jid}"'}).json()
            running = [a for a in allocs if a["ClientStatus"] == "running"]
            if running:
                port = running[0]["AllocatedResources"]["Shared"]["Ports"][0]
                url = f"http://{port['HostIP']}:{port['Value']}/"
        if url is not None and answers(url):
            elapsed = time.monotonic() - started
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"raw job {jid} did not answer in time")
    nomad.delete(f"job/{jid}", params={"purge": "true"})
    nomad.delete(f"var/{path}")
    return elapsed


async def main(rounds: int, on_cluster: bool) -> None:
    env = {"GREETING": "bench", "TOKEN": "not-a-real-secret"}
    platform_env = {
        # No proxy to program (the raw side has none) and no warm sandboxes beside it.
        "AGENTHOST_INGRESS": "false",
        "AGENTHOST_SANDBOX_POOL_SIZE": "0",
    }
    if on_cluster:
        started = start_cluster()
        s = Settings()
        python = s.image_python
        cluster = cluster_env(push_images([python, s.image_base, s.image_postgres, s.image_redis]))
        platform_env.update(cluster.platform_env())
        args = {"image": cluster.images[python], "command": ["python3", "-c", APP]}
        nomad = operator_client(cluster, token=cluster.token, cert=cluster.client_cert)
        nomad.params = nomad.params.set("namespace", cluster.namespace)
    else:
        started = start_dev_agent()
        build_image()
        platform_env.update(
            {"AGENTHOST_BACKEND": "nomad", "AGENTHOST_NOMAD_ADDR": NOMAD_ADDR, "AGENTHOST_IMAGE_ALLOW": "ah-bench/*"}
        )
        args = {"image": IMAGE}
        nomad = httpx.Client(base_url=f"{NOMAD_ADDR}/v1/", timeout=30)
    host = AgentHost(data_dir=Path(tempfile.mkdtemp(prefix="ah-bench-nomad-")), env=platform_env)
    host.init()
    key = host.tenant("bench")
    ours: list[float] = []
    raw: list[float] = []
    try:
        with nomad:
            async with connect(host, key, "http") as client:
                await call(client, "whoami")  # server warm-up, not measured
                for n in range(rounds):
                    t = time.monotonic()
                    svc = await call(client, "deploy_service", {"name": f"b{n}", "port": 8000, "env": env, **args})
                    ours.append(time.monotonic() - t)
                    assert svc["status"] == "running" and answers(svc["internal_url"]), svc
                    template = nomad.get(f"job/ah-{svc['id']}").json()
                    await call(client, "delete_service", {"service": f"b{n}", "confirm": True})
                    raw.append(raw_deploy(nomad, template, env, n))
    finally:
        host.stop()
        if started and on_cluster:
            stop_cluster()
        elif started:
            stop_dev_agent()
    med_ours, med_raw = statistics.median(ours), statistics.median(raw)
    print(f"rounds: {rounds} on {'the three-node cluster' if on_cluster else 'the dev agent'}")  # noqa: T201
    print(f"agenthost deploy_service (MCP over HTTP, wait=true): median {med_ours * 1000:.0f} ms")  # noqa: T201
    print(f"raw Nomad job register + wait for the port:          median {med_raw * 1000:.0f} ms")  # noqa: T201
    print(f"ratio agenthost / raw: {med_ours / med_raw:.2f}")  # noqa: T201


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cluster", action="store_true", help="on the three-node test cluster")
    args = parser.parse_args()
    anyio.run(main, args.rounds, args.cluster)
