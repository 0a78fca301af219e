"""Protocol-level checks every ``Backend`` must pass: the real ones (tests/e2e/test_backend_protocol.py, on
Docker and Nomad) and the in-memory FakeBackend the unit suite runs the use-cases over
(tests/unit/test_fake_backend.py). What they check is what the orchestrator relies on; how long an engine
takes is not: every wait is bounded and polls the engine's answer.

Each check takes the backend and an image that has ``sh``; it removes what it made.
"""

from __future__ import annotations

import uuid

import anyio

from orchestrator.backends.base import Backend, ExecSpec, VolumeSpec, WorkloadSpec, WorkloadStatus
from orchestrator.backends.exec_wrapper import EXEC_MARKER
from orchestrator.errors import InvalidInput, NotFound

__all__ = ["check_exec", "check_prepared_exec", "check_volumes", "check_workload_lifecycle", "sample_spec"]

TENANT_LABEL = "agenthost.tenant"


def sample_spec(image: str, kind: str = "sandbox", **extra: object) -> WorkloadSpec:
    tid = f"t_proto{uuid.uuid4().hex[:8]}"
    return WorkloadSpec.model_validate(
        {
            "id": f"sbx_{uuid.uuid4().hex[:10]}",
            "kind": kind,
            "tenant_id": tid,
            "image": image,
            "command": ["sleep", "3600"],
            "memory_mb": 64,
            "cpus": 0.25,
            "runtime": "runsc",
            "egress": "none",
            "restart": "never",
            "health_check": None,
            "labels": {TENANT_LABEL: tid},
            **extra,
        }
    )


async def _state(backend: Backend, workload_id: str, wanted: str, timeout: float = 90) -> WorkloadStatus:
    with anyio.move_on_after(timeout):
        while (st := await backend.workload_status(workload_id)).state != wanted:
            await anyio.sleep(0.2)
    assert st.state == wanted, f"{workload_id} did not reach {wanted} in {timeout} s: {st}"
    return st


async def check_workload_lifecycle(backend: Backend, image: str) -> None:
    """ensure (idempotent) -> running with the spec's hash and labels; stop -> exited; start; restart (not counted
    as a crash); remove."""
    spec = sample_spec(image)
    assert (await backend.workload_status(spec.id)).state == "missing"
    try:
        await backend.ensure_workload(spec)
        st = await _state(backend, spec.id, "running")
        assert st.spec_hash == spec.spec_hash() and st.labels[TENANT_LABEL] == spec.tenant_id
        again = await backend.ensure_workload(spec)
        assert again.spec_hash == spec.spec_hash()
        assert [w.id for w in await backend.list_workloads({TENANT_LABEL: spec.tenant_id})] == [spec.id]
        assert await backend.list_workloads({TENANT_LABEL: "t_nobody"}) == []
        await backend.stop_workload(spec.id, timeout_s=1)
        await _state(backend, spec.id, "exited")
        await backend.start_workload(spec.id)
        await _state(backend, spec.id, "running")
        await backend.restart_workload(spec.id)
        # A restart someone asked for is no crash: restarts counts only those the engine made after one.
        assert (await _state(backend, spec.id, "running")).restarts == 0
    finally:
        await backend.remove_workload(spec.id)
    assert (await backend.workload_status(spec.id)).state == "missing"
    assert await backend.remove_workload(spec.id) is False
    for missing in (backend.start_workload, backend.restart_workload):
        try:
            await missing(spec.id)
        except NotFound:
            pass
        else:
            raise AssertionError(f"{missing.__name__} of a missing workload did not raise NotFound")


async def check_exec(backend: Backend, image: str) -> None:
    """argv, stdin, env and workdir arrive; exit codes come back; a stopped workload is InvalidInput."""
    spec = sample_spec(image, env={"FROM_SPEC": "spec-value"})
    try:
        await backend.ensure_workload(spec)
        await _state(backend, spec.id, "running")
        run = await backend.exec(spec.id, ExecSpec(["printenv", "FROM_SPEC"], timeout_s=30))
        assert (run.exit_code, run.stdout, run.timed_out) == (0, "spec-value\n", False), run
        run = await backend.exec(spec.id, ExecSpec(["printenv", "EXTRA"], env={"EXTRA": "x"}, timeout_s=30))
        assert (run.exit_code, run.stdout) == (0, "x\n"), run
        run = await backend.exec(spec.id, ExecSpec(["cat"], stdin=b"from-stdin", timeout_s=30))
        assert run.stdout == "from-stdin", run
        run = await backend.exec(spec.id, ExecSpec(["pwd"], workdir="/tmp", timeout_s=30))
        assert run.stdout == "/tmp\n", run
        run = await backend.exec(spec.id, ExecSpec(["sh", "-c", "exit 7"], timeout_s=30))
        assert run.exit_code == 7, run
        slow = await backend.exec(spec.id, ExecSpec(["sleep", "30"], timeout_s=1))
        assert slow.timed_out and slow.exit_code is None, slow
        await backend.stop_workload(spec.id, timeout_s=1)
        await _state(backend, spec.id, "exited")
        try:
            await backend.exec(spec.id, ExecSpec(["true"], timeout_s=30))
        except InvalidInput:
            pass
        else:
            raise AssertionError("exec in a stopped workload did not raise InvalidInput")
    finally:
        await backend.remove_workload(spec.id)


async def check_prepared_exec(backend: Backend, image: str) -> None:
    """An exec prepared ahead of the next command (where the backend prepares them): that command runs in it, its
    marker the key prepare_exec returned, with argv, stdin, env, workdir, status and deadline as in any exec;
    the command after it runs as ever, as does one after the prepared exec was discarded; a stopped workload has
    none, and none can be prepared in it."""
    spec = sample_spec(image)
    marker = ["printenv", EXEC_MARKER]
    try:
        await backend.ensure_workload(spec)
        await _state(backend, spec.id, "running")
        await backend.discard_prepared_exec(spec.id)  # none prepared: nothing to give up
        key = await backend.prepare_exec(spec.id)
        run = await backend.exec(spec.id, ExecSpec(marker, timeout_s=30))
        assert run.exit_code == 0 and run.stdout.strip(), run
        if key is None:
            return  # this backend starts every exec when its command comes
        assert run.stdout == f"{key}\n", (key, run)
        run = await backend.exec(spec.id, ExecSpec(marker, timeout_s=30))
        assert run.exit_code == 0 and run.stdout not in ("", f"{key}\n"), (key, run)
        cases: list[tuple[ExecSpec, str, int]] = [
            (ExecSpec(["cat"], stdin=b"from-stdin", timeout_s=30), "from-stdin", 0),
            (ExecSpec(["printenv", "EXTRA"], env={"EXTRA": "x\ny"}, timeout_s=30), "x\ny\n", 0),
            (ExecSpec(["pwd"], workdir="/tmp", timeout_s=30), "/tmp\n", 0),
            (ExecSpec(["sh", "-c", "exit 7"], timeout_s=30), "", 7),
        ]
        for exec_spec, stdout, status in cases:
            assert await backend.prepare_exec(spec.id)
            run = await backend.exec(spec.id, exec_spec)
            assert (run.exit_code, run.stdout) == (status, stdout), (exec_spec, run)
        assert await backend.prepare_exec(spec.id)
        slow = await backend.exec(spec.id, ExecSpec(["sleep", "30"], timeout_s=1))
        assert slow.timed_out and slow.exit_code is None, slow
        key = await backend.prepare_exec(spec.id)
        await backend.discard_prepared_exec(spec.id)  # before code the platform did not start runs there
        run = await backend.exec(spec.id, ExecSpec(marker, timeout_s=30))
        assert run.exit_code == 0 and run.stdout not in ("", f"{key}\n"), (key, run)
        assert await backend.prepare_exec(spec.id)  # left unused: the stop gives it up
        await backend.stop_workload(spec.id, timeout_s=1)
        await _state(backend, spec.id, "exited")
        try:
            await backend.prepare_exec(spec.id)
        except InvalidInput:
            pass
        else:
            raise AssertionError("prepare_exec in a stopped workload did not raise InvalidInput")
    finally:
        await backend.remove_workload(spec.id)


async def check_volumes(backend: Backend, image: str) -> None:
    """Volumes: ensure is idempotent, listing filters by label, a workload mounts one, remove says if it removed."""
    tid = f"t_proto{uuid.uuid4().hex[:8]}"
    volume = f"ah-{tid}-data"
    labels = {TENANT_LABEL: tid}
    try:
        await backend.ensure_volume(volume, labels)
        await backend.ensure_volume(volume, labels)
        assert await backend.list_volumes(labels) == [volume]
        assert await backend.volume_path_or_mount(volume)
        spec = sample_spec(image, volumes=[VolumeSpec(name=volume, path="/data")], labels=labels, tenant_id=tid)
        await backend.ensure_workload(spec)
        await _state(backend, spec.id, "running")
        await backend.remove_workload(spec.id)
        assert await backend.remove_volume(volume) is True
        assert await backend.remove_volume(volume) is False
        assert await backend.list_volumes(labels) == []
    finally:
        await backend.remove_volume(volume)
