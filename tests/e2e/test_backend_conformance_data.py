"""The conformance suite, part two: databases and builds, through the tools, unchanged on Docker and the
three-node cluster (the build on the Nomad dev agent too).

A linked service really uses its database over the tenant's private network with the injected
connection string; the data outlives a restart; another tenant has no way in. A build from git is
pushed to the platform's registry and deployed from there (on Nomad, the node pulls it; on the cluster from
its TLS registry, with the login the nodes hold).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import docker
import docker.errors
import pytest

from orchestrator.backends.base import Backend
from orchestrator.settings import Settings

from .conformance import SERVER_PY, answers, container_of, nomad_read, registry_api, service_address, sh, tenant
from .conftest import ALL_PLATFORMS
from .harness import AgentHost, ToolFailed, call, call_all, connect, make_repo, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

CREATE_NOTES = (
    'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt'
    ' -c "CREATE TABLE notes (id int PRIMARY KEY, body text)"'
    " -c \"INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 50) g\""
    ' -c "SELECT count(*) FROM notes"'
)
COUNT_NOTES = 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAt -c "SELECT count(*) FROM notes"'


async def test_databases_linked_durable_and_private(
    host: AgentHost, product_backend: Backend, docker_client: docker.DockerClient, platform_images: Settings
) -> None:
    key = tenant(host, "conf-db")
    tid = host.tenant_ids[f"conf-db-{host.platform}"]
    images = host.settings
    async with connect(host, key, "http") as client:
        pg, cache, *apps = await call_all(
            client,
            ("create_database", {"name": "pg", "engine": "postgres"}),
            ("create_database", {"name": "cache", "engine": "redis", "memory_mb": 128}),
            ("deploy_service", {"name": "pgapp", "image": images.image_postgres, "command": ["sleep", "infinity"]}),
            ("deploy_service", {"name": "cacheapp", "image": images.image_redis, "command": ["sleep", "infinity"]}),
        )
        assert pg["status"] == "running" and cache["status"] == "running", (pg, cache)
        assert pg["url"] == "postgresql://pg:****@pg:5432/pg"
        assert pg["external_url"].startswith(f"postgresql://pg:****@{service_address(host, pg['id'])}:")
        assert [svc["status"] for svc in apps] == ["running", "running"], apps
        link, other = await call_all(
            client,
            ("link_database", {"database": "pg", "service": "pgapp"}),
            ("link_database", {"database": "cache", "service": "cacheapp", "env_var": "CACHE"}),
        )
        assert (link["env_var"], link["linked"], link["service_status"]) == ("DATABASE_URL", True, "running")
        assert other["service_status"] == "running"

        # The linked services reach their databases by name with the injected strings; the password
        # they hold is masked in what the tools return.
        code, out, err = await sh(client, CREATE_NOTES + '; echo "$DATABASE_URL"', service="pgapp")
        assert (code, out) == (0, "50\npostgresql://pg:****@pg:5432/pg\n"), err
        code, out, err = await sh(client, 'redis-cli -u "$CACHE" --no-auth-warning SET greeting hi', service="cacheapp")
        assert (code, out) == (0, "OK\n"), err
        _, out, _ = await sh(client, "redis-cli -h cache GET greeting", service="cacheapp")
        assert "NOAUTH" in out  # no password, no data
        pg_url = (await call(client, "database_connection_string", {"database": "pg", "reveal": True}))["url"]

        # The engine stops both (a node reboot); the platform brings them back on their volumes.
        for db in (pg, cache):
            await product_backend.stop_workload(db["id"])
            assert (await product_backend.workload_status(db["id"])).state in ("exited", "missing")
    async with connect(host, key, "stdio") as client:  # a fresh control plane reconciles at once
        for name in ("pg", "cache"):
            await until(client, "get_database", {"database": name}, lambda d: d["status"] == "running", timeout=180)
        code, out, err = await sh(client, COUNT_NOTES, service="pgapp")
        assert (code, out) == (0, "50\n"), err
        code, out, err = await sh(client, 'redis-cli -u "$CACHE" --no-auth-warning GET greeting', service="cacheapp")
        assert (code, out) == (0, "hi\n"), err

    # Another tenant, even with the full connection string, reaches neither the name nor an address.
    addresses = [
        n["IPAddress"]
        for n in container_of(host, docker_client, pg["id"]).attrs["NetworkSettings"]["Networks"].values()
        if n["IPAddress"]
    ]
    assert addresses
    async with connect(host, tenant(host, "conf-db-other"), "stdio") as client:
        with pytest.raises(ToolFailed) as err:
            await call(client, "get_database", {"database": pg["id"]})
        assert err.value.code == "not_found"
        spec = {"name": "intruder", "image": images.image_postgres, "command": ["sleep", "infinity"]}
        intruder = await call(client, "deploy_service", spec)
        assert intruder["status"] == "running", intruder
        run = await call(
            client, "exec", {"service": "intruder", "command": 'psql "$URL" -c "select 1"', "env": {"URL": pg_url}}
        )
        assert run["exit_code"] != 0 and "could not translate host name" in run["stderr"], run
        for address in addresses:
            url = pg_url.replace("@pg:", f"@{address}:") + "?connect_timeout=3"
            run = await call(
                client, "exec", {"service": "intruder", "command": 'psql "$URL" -c "select 1"', "env": {"URL": url}}
            )
            assert run["exit_code"] != 0, f"another tenant reached {address}: {run}"
        await call(client, "delete_service", {"service": "intruder", "confirm": True})

    async with connect(host, key, "http") as client:
        for deleted in await call_all(
            client, *(("delete_database", {"database": name, "confirm": True}) for name in ("pg", "cache"))
        ):
            assert any("data volume" in r for r in deleted["removed"]), deleted
        await until(client, "get_service", {"service": "pgapp"}, lambda s: s["status"] == "running")
        assert (await sh(client, 'test -z "$DATABASE_URL"', service="pgapp"))[0] == 0
        assert (await call(client, "list_databases"))["databases"] == []
        await call_all(client, *(("delete_service", {"service": n, "confirm": True}) for n in ("pgapp", "cacheapp")))
    assert await product_backend.list_workloads({"agenthost.tenant": tid}) == []
    assert await product_backend.list_volumes({"agenthost.tenant": tid}) == []


@ALL_PLATFORMS  # on the dev agent, the node pulls from the platform's plain local registry
async def test_build_from_git_is_deployed_from_the_registry(
    host: AgentHost, product_backend: Backend, docker_client: docker.DockerClient, repo_dir: Path
) -> None:
    marker = f"built-{uuid.uuid4().hex[:8]}"
    repo = make_repo(
        repo_dir / "app",
        {
            "app.py": SERVER_PY.replace("{body}", marker),
            "Dockerfile": (
                f"FROM {host.settings.image_python}\nCOPY app.py /app/app.py\nEXPOSE 8000\n"
                'CMD ["python3", "/app/app.py"]\n'
            ),
        },
    )
    key = tenant(host, "conf-build")
    tid = host.tenant_ids[f"conf-build-{host.platform}"]
    registry = host.settings.registry
    try:
        async with connect(host, key, "http") as client:
            build = await call(client, "build_from_git", {"git_url": str(repo), "name": "web", "wait_timeout_s": 300})
            assert build["status"] == "succeeded", build
            assert build["image"] == f"{registry}/{tid}/web:{build['id']}" and build["port"] == 8000
            with registry_api(host) as api:
                assert build["id"] in api.get(f"{tid}/web/tags/list").json()["tags"]
            if host.platform != "docker":
                # Nomad nodes get images from the registry: drop the builder's copy so the node must pull.
                docker_client.images.remove(build["image"])

            svc = await call(client, "deploy_service", {"name": "web", "build_id": build["id"]})
            assert svc["status"] == "running" and svc["image"] == build["image"], svc
            assert await answers(svc["internal_url"]) == marker
            # The engine that runs it (on the cluster, the dockerd of its node) holds what it pulled.
            container = container_of(host, docker_client, svc["id"])
            assert container.attrs["Image"] == container.client.images.get(build["image"]).id
            if host.platform != "docker":
                job = nomad_read(host, f"job/ah-{svc['id']}")
                assert job["TaskGroups"][0]["Tasks"][-1]["Config"]["image"] == build["image"]
                alloc = nomad_read(host, "allocations", filter=f'JobID == "ah-{svc["id"]}"')[0]
                events = nomad_read(host, f"allocation/{alloc['ID']}")["TaskStates"]["main"]["Events"]
                assert any(e["DisplayMessage"] == "Downloading image" for e in events), events

                # A build whose image left the registry cannot be deployed: the nodes could not get it.
                with registry_api(host) as api:
                    manifest = f"{tid}/web/manifests/{build['id']}"
                    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
                    digest = api.head(manifest, headers=accept).headers["Docker-Content-Digest"]
                    api.delete(f"{tid}/web/manifests/{digest}").raise_for_status()
                with pytest.raises(ToolFailed) as err:
                    await call(client, "deploy_service", {"name": "again", "build_id": build["id"]})
                assert err.value.code == "image_not_found" and "registry" in err.value.message
            await call(client, "delete_service", {"service": "web", "confirm": True})
            assert (await product_backend.workload_status(svc["id"])).state == "missing"
    finally:
        for image in docker_client.images.list(name=f"{registry}/{tid}/web"):
            try:
                docker_client.images.remove(image.id, force=True)
            except docker.errors.APIError:
                pass  # gone already, or still in use by a container the fixture's teardown removes
