"""A drain carries a database's data with its tenant (``backups.moves``), over the in-memory engine playing a
cluster whose volumes live on nodes: the database is stopped before its files are snapshot on the drained node,
the snapshot replaces the files of its fresh volume on the new node and is then forgotten; what cannot move says
why, and nothing is left stopped when the drain fails."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.backends.base import NodeDrain, NodeWorkload, OneShotResult, OneShotSpec
from orchestrator.backups.restic import ResticRepo
from orchestrator.errors import NoCapacity
from orchestrator.settings import Settings
from tests.fakes import FakeBackend

from .site import Site

NODE = next(iter(FakeBackend()._eligible))
SUMMARY = json.dumps({"message_type": "summary", "snapshot_id": "5eed0f1e", "total_bytes_processed": 2048})
BACKED_UP = OneShotResult(exit_code=0, stdout=f'{{"root": [999, 1000, 448]}}\n{SUMMARY}\n', stderr="")


@pytest.fixture
def app_settings(app_settings: Settings) -> Settings:
    return app_settings.model_copy(
        update={
            "backup_target": "s3",
            "backup_s3_endpoint": "http://10.0.0.5:9000",
            "backup_s3_access_key": "AKIA-test",
            "backup_s3_secret_key": "s3-secret",
        }
    )


class Cluster:
    """The fake engine as a cluster: the database's volume is on NODE, the drain moves its tenant away."""

    def __init__(self, site: Site, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fake, self.forgotten, self.db_state_at_backup = fake, list[str](), ""
        self.copies: list[tuple[str, str, str]] = []  # (what, volume, node) of the copy on the drained node
        self.drain_error: Exception | None = None
        self.db = site.call("create_database", name="ledger", engine="redis")
        assert self.db["status"] == "running", self.db
        self.volume = fake.workloads[self.db["id"]].spec.volumes[0].name
        fake.name = "nomad"  # volumes on nodes: restic runs beside them

        async def volumes_on(node_id: str) -> list[str]:
            return [self.volume] if node_id == NODE else []

        async def drain_node(node_id: str, deadline_s: int) -> NodeDrain:
            if self.drain_error is not None:
                raise self.drain_error
            (node,) = await fake.nodes()
            held = NodeWorkload(id=self.db["id"], tenant="t", kind="database", data_node=NODE)
            return NodeDrain(node=node, moved_to={"t": "n2"}, stranded=[held])

        async def release_volume(name: str, keep_copy: bool = False) -> str | None:
            self.copies.append(("kept" if keep_copy else "released", name, NODE))
            return NODE if name == self.volume else None

        async def reclaim_volume(name: str, node_id: str) -> None:
            self.copies.append(("reclaimed", name, node_id))

        async def drop_copy(name: str, node_id: str) -> None:
            self.copies.append(("dropped", name, node_id))

        run_oneshot = fake.run_oneshot

        async def watched(spec: OneShotSpec) -> OneShotResult:
            if "backup" in spec.argv:
                self.db_state_at_backup = fake.workloads[self.db["id"]].state
            return await run_oneshot(spec)

        async def ensure(repo: ResticRepo) -> None:
            return None

        async def forget(repo: ResticRepo, snapshot_id: str) -> None:
            self.forgotten.append(snapshot_id)

        async def snapshots(repo: ResticRepo, tag: str) -> list[Any]:
            return []  # the summary's short id stands

        monkeypatch.setattr(fake, "volumes_on", volumes_on)
        monkeypatch.setattr(fake, "drain_node", drain_node)
        monkeypatch.setattr(fake, "release_volume", release_volume)
        monkeypatch.setattr(fake, "reclaim_volume", reclaim_volume)
        monkeypatch.setattr(fake, "drop_copy", drop_copy)
        monkeypatch.setattr(fake, "run_oneshot", watched)
        monkeypatch.setattr(ResticRepo, "ensure", ensure)
        monkeypatch.setattr(ResticRepo, "forget", forget)
        monkeypatch.setattr(ResticRepo, "snapshots", snapshots)


@pytest.fixture
def cluster(site: Site, fake_backend: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    return Cluster(site, fake_backend, monkeypatch)


def _drain(site: Site) -> Any:
    return site.call("drain_node", key=site.admin, node=NODE, deadline_s=10)


def test_a_drain_snapshots_the_stopped_database_on_its_node_and_restores_it_on_the_new_one(
    site: Site, cluster: Cluster
) -> None:
    cluster.fake.oneshot_results = [BACKED_UP]
    report = _drain(site)
    assert [(w["id"], w["error"], w["data_node"]) for w in report["data_moved"]] == [(cluster.db["id"], None, None)]
    assert report["stranded"] == [], report
    backup, restore = cluster.fake.oneshots
    assert cluster.db_state_at_backup == "exited"  # stopped first: every write is on disk, none comes after
    assert backup.volume is not None and backup.volume.name == cluster.volume
    assert backup.argv[3:7] == ["backup", "", json.dumps([f"ah-move:{cluster.db['id']}"]), "."]
    assert restore.volume is not None and restore.volume.name == cluster.volume
    assert restore.argv[5:] == ["5eed0f1e", "replace", "[999, 1000, 448]"]
    assert restore.argv[3] == "restore" and restore.argv[4].startswith(".ah-restore-mv_")
    assert cluster.forgotten == ["5eed0f1e"]
    # The drained node's copy is given up only once the data is safe on the new node.
    assert cluster.copies == [("kept", cluster.volume, NODE), ("dropped", cluster.volume, NODE)]
    assert site.run(site.platform.store.moves.all) == []
    got = site.call("get_database", database="ledger")
    assert got["status"] == "running", got
    assert cluster.fake.workloads[cluster.db["id"]].state == "running"
    assert site.call("list_backups")["backups"] == []


def test_without_an_s3_repository_the_database_stays_and_the_report_says_what_to_set(
    site: Site, cluster: Cluster
) -> None:
    site.platform.backups.moves.settings = site.platform.settings.model_copy(update={"backup_target": "local"})
    report = _drain(site)
    (held,) = report["stranded"]
    assert held["id"] == cluster.db["id"] and held["data_node"] == NODE
    assert "AGENTHOST_BACKUP_TARGET=s3" in held["error"], held
    assert report["data_moved"] == [] and cluster.fake.oneshots == []
    assert cluster.fake.workloads[cluster.db["id"]].state == "running"


def test_a_failed_snapshot_leaves_the_database_running_where_its_data_is(site: Site, cluster: Cluster) -> None:
    cluster.fake.oneshot_results = [OneShotResult(exit_code=1, stdout="", stderr="Fatal: disk I/O error")]
    report = _drain(site)
    (held,) = report["stranded"]
    assert "could not be copied off the node" in held["error"] and "disk I/O error" in held["error"], held
    assert len(cluster.fake.oneshots) == 1 and cluster.forgotten == []
    assert cluster.fake.workloads[cluster.db["id"]].state == "running"


def test_a_drain_that_fails_starts_the_stopped_database_again(site: Site, cluster: Cluster) -> None:
    cluster.fake.oneshot_results = [BACKED_UP]
    cluster.drain_error = NoCapacity("no other node has room", "add a node")
    refused = _drain(site)
    assert refused["error"]["code"] == "no_capacity", refused
    assert len(cluster.fake.oneshots) == 1  # the snapshot, and no restore
    assert site.run(site.platform.store.moves.all) == []
    assert cluster.fake.workloads[cluster.db["id"]].state == "running"
    assert site.call("get_database", database="ledger")["status"] == "running"


def test_a_failed_restore_gives_the_database_its_copy_on_the_drained_node_back_and_keeps_the_snapshot(
    site: Site, cluster: Cluster
) -> None:
    cluster.fake.oneshot_results = [BACKED_UP, OneShotResult(exit_code=1, stdout="", stderr="Fatal: no space")]
    report = _drain(site)
    (held,) = report["stranded"]
    assert held["data_node"] == NODE and "no space" in held["error"], held
    assert f"stays on node {NODE}" in held["error"] and "snapshot 5eed0f1e" in held["error"], held
    assert cluster.forgotten == []
    assert cluster.copies == [("kept", cluster.volume, NODE), ("reclaimed", cluster.volume, NODE)]
    assert site.run(site.platform.store.moves.all) == []
    got = site.call("get_database", database="ledger")
    assert got["status"] == "failed" and "5eed0f1e" in got["last_error"], got
    assert cluster.fake.workloads[cluster.db["id"]].state == "exited"  # not running empty on the new node


def test_a_move_whose_process_died_is_undone_and_a_live_one_is_left_alone(site: Site, cluster: Cluster) -> None:
    platform = site.platform
    db_id = cluster.db["id"]
    tenant = platform.store.scoped(cluster.fake.workloads[db_id].spec.tenant_id)

    async def start(owner: str) -> None:
        await platform.store.moves.start(db_id, tenant.tenant_id, NODE, owner)
        await tenant.databases.update(db_id, status="restoring")
        await cluster.fake.stop_workload(db_id)

    site.run(start, platform.backups.ops.owner)  # this process: a move under way
    assert site.run(platform.backups.moves.recover) == {"data_moves_undone": 0}
    assert site.call("get_database", database="ledger")["status"] == "restoring"

    site.run(platform.store.moves.finish, db_id)
    site.run(start, "elsewhere:4242:1")  # a process that is gone
    assert site.run(platform.backups.moves.recover) == {"data_moves_undone": 1}
    assert cluster.copies == [("reclaimed", cluster.volume, NODE)]
    assert site.run(platform.store.moves.all) == []
    got = site.call("get_database", database="ledger")
    assert got["status"] == "failed" and f"off node {NODE}, where it stays" in got["last_error"], got
    assert site.run(platform.backups.moves.recover) == {"data_moves_undone": 0}


def test_a_database_with_a_backup_under_way_is_not_stopped_and_stays(site: Site, cluster: Cluster) -> None:
    tenant = site.platform.store.scoped(cluster.fake.workloads[cluster.db["id"]].spec.tenant_id)
    owner = site.platform.backups.ops.owner
    site.run(tenant.backups.insert, "database", "ledger", cluster.db["id"], "redis", "s3", owner, {})
    report = _drain(site)
    (held,) = report["stranded"]
    assert "backup/restore of database ledger is running" in held["error"], held
    assert held["data_node"] == NODE and cluster.fake.oneshots == []
    assert cluster.fake.workloads[cluster.db["id"]].state == "running"
    assert site.run(site.platform.store.moves.all) == []


def test_a_database_another_drain_is_moving_is_left_to_it(site: Site, cluster: Cluster) -> None:
    tenant_id = cluster.fake.workloads[cluster.db["id"]].spec.tenant_id
    site.run(site.platform.store.moves.start, cluster.db["id"], tenant_id, NODE, site.platform.backups.ops.owner)
    report = _drain(site)
    (held,) = report["stranded"]
    assert "another drain is moving its data" in held["error"], held
    assert cluster.fake.oneshots == [] and cluster.fake.workloads[cluster.db["id"]].state == "running"
    assert [m.database_id for m in site.run(site.platform.store.moves.all)] == [cluster.db["id"]]  # its own row
