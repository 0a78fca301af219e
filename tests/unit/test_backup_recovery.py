"""A backup whose process died ends complete (its snapshot reached the repository) or failed, never running."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator.backups import BackupManager
from orchestrator.backups.restic import ResticRepo
from orchestrator.owners import owner_alive, owner_token
from orchestrator.settings import Quotas, Settings
from orchestrator.store import Store
from tests.fakes import FakeBackend

pytestmark = pytest.mark.anyio


def test_owner_tokens_tell_live_processes_from_dead_ones() -> None:
    me = owner_token()
    assert owner_alive(me)
    host, pid, started = me.split(":")
    assert not owner_alive(f"{host}:{pid}:{int(started) + 1}")  # the pid was reused by another process
    assert not owner_alive(f"{host}:999999999:1")
    assert not owner_alive(f"another-host:{pid}:{started}")
    assert not owner_alive(None)


async def test_recovery_completes_found_snapshots_fails_the_rest_and_spares_live_ones(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    tenant = await store.tenants.create("t", Quotas())
    ts = store.scoped(tenant.id)
    dead = f"{owner_token().split(':')[0]}:999999999:1"
    # One running operation per volume: its row is the volume's lock.
    done = await ts.backups.insert("volume", "done", None, None, "local", dead, {})
    lost = await ts.backups.insert("volume", "lost", None, None, "local", dead, {})
    live = await ts.backups.insert("volume", "live", None, None, "local", owner_token(), {})
    # The dead process got as far as the snapshot for `done`, not for `lost`.
    repo = ResticRepo(settings, tenant.id, "local", await ts.backups.repo_password("local"))
    await repo.ensure()
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("data")
    snapshot, _ = await repo.backup(source, [f"ah:{done.id}"])

    manager = BackupManager(settings, store, FakeBackend(name="docker"), cast(Any, None), cast(Any, None))
    counts = await manager.recover()

    assert counts == {"backups_recovered": 2, "restores_recovered": 0}
    got = {b.id: b for b in await ts.backups.all()}
    assert got[done.id].status == "complete" and got[done.id].snapshot_id == snapshot
    assert got[lost.id].status == "failed" and "interrupted" in (got[lost.id].error or "")
    assert got[live.id].status == "running"
    assert await manager.recover() == {"backups_recovered": 0, "restores_recovered": 0}
