"""Per-build pids cgroups on a stand-in cgroup tree, and reading a Dockerfile out of a tenant's checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.backends.docker import cgroups as build_cgroups
from orchestrator.backends.docker.build import read_dockerfile
from orchestrator.backends.docker.cgroups import BuildCgroup, sweep
from orchestrator.errors import BuildFailed

DEAD_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # never a running process


@pytest.fixture
def v1_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for hierarchy in ("pids", "memory", "cpu"):
        (tmp_path / hierarchy).mkdir()
    monkeypatch.setattr(build_cgroups, "ROOT", tmp_path)
    return tmp_path


def test_v1_cgroup_has_the_limit_and_goes_from_every_hierarchy(v1_root: Path) -> None:
    cg = BuildCgroup("1", 300)
    assert cg.parent == f"/{cg.name}" and cg.name.startswith(f"agenthost-build.{os.getpid()}.")
    assert (v1_root / "pids" / cg.name / "pids.max").read_text() == "300"
    (v1_root / "pids" / cg.name / "pids.max").unlink()  # a real cgroup has no files to remove
    (v1_root / "memory" / cg.name / "step").mkdir(parents=True)  # the engine made it, a step still runs
    assert cg.remove() is False
    (v1_root / "memory" / cg.name / "step").rmdir()
    assert cg.remove() is True
    assert list(v1_root.glob(f"*/{cg.name}")) == []


def test_v2_cgroup_enables_pids_for_its_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_cgroups, "ROOT", tmp_path)
    cg = BuildCgroup("2", 500)
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+pids"
    assert (tmp_path / cg.name / "pids.max").read_text() == "500"


def test_sweep_removes_only_empty_cgroups_of_dead_processes(v1_root: Path) -> None:
    dead, busy = f"agenthost-build.{DEAD_PID}.a", f"agenthost-build.{DEAD_PID}.b"
    mine = f"agenthost-build.{os.getpid()}.c"
    for name in (dead, busy, mine):
        for hierarchy in ("pids", "memory"):
            (v1_root / hierarchy / name).mkdir()
    (v1_root / "pids" / busy / "step").mkdir()
    assert sweep("1") == [dead]
    assert not list(v1_root.glob(f"*/{dead}"))
    assert (v1_root / "pids" / busy).is_dir() and (v1_root / "pids" / mine).is_dir()


def test_unsupported_reasons(v1_root: Path) -> None:
    assert build_cgroups.unsupported_reason("cgroupfs", "1", local=True) is None
    assert "systemd" in (build_cgroups.unsupported_reason("systemd", "2", local=True) or "")
    assert "not on this host" in (build_cgroups.unsupported_reason("cgroupfs", "1", local=False) or "")


def test_the_dockerfile_is_never_read_through_a_symlink(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "docker").mkdir(parents=True)
    (ctx / "docker" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "secret").write_text("the control plane's")
    (ctx / "Dockerfile").symlink_to(tmp_path / "secret")
    (ctx / "inner").symlink_to(ctx / "docker" / "Dockerfile")
    (ctx / "out").symlink_to(tmp_path)
    os.mkfifo(ctx / "fifo")
    assert read_dockerfile(ctx, "docker/Dockerfile") == "FROM scratch\n"
    for name in ("Dockerfile", "inner", "out/secret", "fifo", "missing"):
        with pytest.raises(BuildFailed):
            read_dockerfile(ctx, name)
    generated = tmp_path / "Dockerfile.generated"
    generated.write_text("FROM x\n")
    assert read_dockerfile(ctx, str(generated)) == "FROM x\n"
