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


# 2.4 MB on stdout, then a line on stderr, and the exit at once: on Nomad 1.6 the docker driver stops collecting
# the container's logs when it exits, and with the job's output read from its logs this answered a stdout cut
# tens of thousands of lines early (five runs of five) and often no stderr at all.
_FLOOD = "import sys; sys.stdout.write(''.join('line %d\\n' % i for i in range(200000))); sys.stderr.write('done\\n')"


async def test_a_oneshot_job_that_writes_much_and_exits_at_once_answers_its_whole_output(
    host: AgentHost, backend: Backend, platform_images: object
) -> None:
    tag = uuid.uuid4().hex[:8]
    spec = OneShotSpec(
        id=f"os{tag}f",
        tenant_id=f"t_os{tag}",
        image=host.settings.image_python,
        argv=["python3", "-c", _FLOOD],
        env={"AH_UNUSED": "1"},
        timeout_s=120,
    )
    flood = await backend.run_oneshot(spec)
    assert (flood.exit_code, flood.stdout.splitlines()[-1], flood.stderr.strip()) == (0, "line 199999", "done"), flood
    assert len(flood.stdout.encode()) <= 64 * 1024  # the tail the protocol promises
    assert (await backend.workload_status(spec.id)).state == "missing"
