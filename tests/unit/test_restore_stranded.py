"""restore_backup over a database whose data is on a node that cannot run it (``node_lost``): its volume is
released and the database starts afresh on its tenant's node before the snapshot is loaded there; a database
that merely failed, or a node that is ready again, keeps its volume."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.backends.base import WorkloadStatus
from orchestrator.backups.restore import Restores
from orchestrator.errors import Conflict, InvalidInput
from orchestrator.models import DatabaseRecord, Principal
from orchestrator.progress import silent
from orchestrator.store import TenantStore
from orchestrator.store.backups import BackupRecord
from tests.fakes import FakeBackend

from .site import Site

LOST = "node-a"


def _stranded(site: Site, fake: FakeBackend, release: str | None) -> tuple[Principal, TenantStore, DatabaseRecord]:
    """A running redis database the fake then reports held by lost node ``LOST``; ``release_volume`` answers
    ``release`` (None: the node is ready again) and is recorded in ``fake.released``."""
    fake.name = "nomad"  # volumes on the nodes
    made = site.call("create_database", name="cache", engine="redis")
    assert made["status"] == "running", made
    principal = site.run(site.platform.tenants.authenticate, site.key)
    ts = site.platform.store.scoped(principal.tenant_id)
    real_status, released = fake.workload_status, []

    async def status(workload_id: str) -> WorkloadStatus:
        st = await real_status(workload_id)
        return st.model_copy(update={"node_lost": LOST}) if workload_id == made["id"] else st

    async def release_volume(name: str) -> str | None:
        released.append(name)
        return release

    fake.workload_status = status  # type: ignore[method-assign]
    fake.release_volume = release_volume  # type: ignore[method-assign]
    fake.released = released  # type: ignore[attr-defined]

    async def failed() -> DatabaseRecord:
        await ts.databases.update(made["id"], status="failed", last_error=f"its data is on node {LOST}")
        return await ts.databases.get(made["id"])

    return principal, ts, site.run(failed)


def _backup(db: DatabaseRecord) -> BackupRecord:
    now = datetime.now(UTC)
    return BackupRecord(
        id="bk_1", tenant_id=db.tenant_id, kind="database", source_name=db.name, source_id=db.id, engine="redis",
        target="s3", status="complete", snapshot_id="0a1b2c3d", size_bytes=1, error=None, owner=None,
        paused_services=[], meta={}, created_at=now, finished_at=now,
    )  # fmt: skip


def _restores(site: Site) -> Restores:
    return site.platform.backups.restores


def test_a_stranded_database_passes_the_gate_a_merely_failed_one_is_refused(
    site: Site, fake_backend: FakeBackend
) -> None:
    principal, ts, db = _stranded(site, fake_backend, LOST)
    restores = _restores(site)
    question = site.run(restores.describe, ts, _backup(db), None)
    assert question is not None and f"on node {LOST}, which cannot run it" in question

    async def past_the_gate(ts: TenantStore, target: str) -> None:
        raise Conflict("past the gate")

    restores.ops.repo = past_the_gate  # type: ignore[method-assign,assignment]
    with pytest.raises(Conflict, match="past the gate"):
        site.run(restores.start, principal, ts, _backup(db), None, True, silent)

    fake_backend.workload_status = type(fake_backend).workload_status.__get__(fake_backend)  # type: ignore[method-assign]
    with pytest.raises(InvalidInput, match="database cache is failed"):
        site.run(restores.start, principal, ts, _backup(db), None, True, silent)


def test_the_volume_of_a_stranded_database_is_released_and_it_starts_afresh(
    site: Site, fake_backend: FakeBackend
) -> None:
    _, ts, db = _stranded(site, fake_backend, LOST)
    site.run(_restores(site)._rehome, ts, db, silent)
    assert fake_backend.released == [db.spec.volume]  # type: ignore[attr-defined]
    assert fake_backend.workloads[db.id].state == "running"
    assert site.run(ts.databases.get, db.id).status == "running"


def test_a_node_that_is_ready_again_keeps_the_volume_and_the_database_untouched(
    site: Site, fake_backend: FakeBackend
) -> None:
    _, ts, db = _stranded(site, fake_backend, None)
    started = fake_backend.workloads[db.id].started_at
    site.run(_restores(site)._rehome, ts, db, silent)
    assert fake_backend.released == [db.spec.volume]  # type: ignore[attr-defined]
    assert fake_backend.workloads[db.id].started_at == started  # not stopped, not started again
    assert site.run(ts.databases.get, db.id).status == "failed"
