"""Backend.run_oneshot on the real backends (Docker and Nomad): the platform's one-shot job runs once beside its
volume with its secret env, answers its exit code and output, is killed at its deadline and leaves nothing."""

from __future__ import annotations

import uuid

import pytest

from orchestrator.backends.base import Backend, OneShotSpec, VolumeSpec

from .harness import AgentHost

# Docker and the Nomad dev agent; on the cluster, the backups' one-shot jobs are test_nomad_cluster_backups'.
pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.parametrize("host", ["docker", "nomad"], indirect=True)]

_WRITE = "import os, sys; open('/data/note', 'w').write(os.environ['AH_SECRET']); print('wrote'); sys.exit(3)"


async def test_a_oneshot_job_runs_once_beside_its_volume_and_leaves_nothing(
    host: AgentHost, backend: Backend, platform_images: object
) -> None:
    tag = uuid.uuid4().hex[:8]
    tid = f"t_os{tag}"
    volume = f"ah-{tid}-data"
    await backend.ensure_volume(volume, {"agenthost.tenant": tid})

    def spec(suffix: str, argv: list[str], timeout_s: float = 120) -> OneShotSpec:
        return OneShotSpec(
            id=f"os{tag}{suffix}",
            tenant_id=tid,
            image=host.settings.image_python,
            argv=argv,
            env={"AH_SECRET": f"secret-{tag}"},
            volume=VolumeSpec(name=volume, path="/data"),
            timeout_s=timeout_s,
        )

    try:
        wrote = await backend.run_oneshot(spec("w", ["python3", "-c", _WRITE]))
        assert wrote.exit_code == 3 and "wrote" in wrote.stdout, wrote
        read = await backend.run_oneshot(spec("r", ["python3", "-c", "print(open('/data/note').read())"]))
        assert read.exit_code == 0 and f"secret-{tag}" in read.stdout, read
        slow = await backend.run_oneshot(spec("s", ["sleep", "600"], timeout_s=3))
        assert slow.exit_code is None, slow
        for suffix in ("w", "r", "s"):
            assert (await backend.workload_status(f"os{tag}{suffix}")).state == "missing"
    finally:
        await backend.remove_volume(volume)
