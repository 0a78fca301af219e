"""What the engine (Docker) holds and runs for a tenant, seen from outside agenthost: tests check with these
that a tool left nothing behind, or read a workload's data the way its own processes see it."""

from __future__ import annotations

import subprocess

import docker

__all__ = ["NOTHING", "engine_images", "engine_objects", "engine_sh"]

# engine_objects of a tenant that holds nothing.
NOTHING: dict[str, list[str]] = {"containers": [], "volumes": [], "networks": []}


def engine_objects(client: docker.DockerClient, tenant_id: str) -> dict[str, list[str]]:
    """The names of the containers, volumes and networks carrying the tenant's label, each list sorted."""
    label = {"label": f"agenthost.tenant={tenant_id}"}
    return {
        "containers": sorted(c.name for c in client.containers.list(ignore_removed=True, all=True, filters=label)),
        "volumes": sorted(v.name for v in client.volumes.list(filters=label)),
        "networks": sorted(n.name for n in client.networks.list(filters=label)),
    }


def engine_images(client: docker.DockerClient, tenant_id: str) -> list[str]:
    """The ids of the images carrying the tenant's label (its builds)."""
    return [i.id for i in client.images.list(filters={"label": f"agenthost.tenant={tenant_id}"})]


def engine_sh(workload_id: str, script: str, **env: str) -> tuple[int, str]:
    """Run a shell script in a running Docker workload with `docker exec`, as the workload's own user, not
    through agenthost's exec tool; (exit code, stdout and stderr together)."""
    flags = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    proc = subprocess.run(
        ["docker", "exec", *flags, f"ah-{workload_id}", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.returncode, proc.stdout + proc.stderr
