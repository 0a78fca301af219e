"""A running backup or restore row is the lock on its volume or database, for every process on the data dir."""

from __future__ import annotations

import pytest

from orchestrator.errors import Conflict
from orchestrator.owners import owner_token
from orchestrator.settings import Quotas
from orchestrator.store import Store

pytestmark = pytest.mark.anyio


async def test_a_running_backup_or_restore_locks_exactly_its_target(store: Store) -> None:
    ts = store.scoped((await store.tenants.create("t", Quotas())).id)
    other = store.scoped((await store.tenants.create("u", Quotas())).id)
    me = owner_token()
    backup = await ts.backups.insert("volume", "data", None, None, "local", me, {})

    assert await ts.backups.running_on("volume", ["data"]) == ("data", backup.id)
    with pytest.raises(Conflict) as err:
        await ts.backups.check_free("volume", ["logs", "data"])
    assert "volume data" in err.value.message and "list_backups" in err.value.hint
    await ts.backups.check_free("volume", ["logs"])
    await ts.backups.check_free("volume", [])
    await ts.backups.check_free("database", ["data"])  # a database of the same name is another thing
    await other.backups.check_free("volume", ["data"])  # and so is another tenant's volume
    await ts.backups.check_free("volume", ["data"], but=backup.id)  # the operation itself resumes services
    with pytest.raises(Conflict):
        await ts.backups.insert("volume", "data", None, None, "local", me, {})

    await ts.backups.finish(backup.id, "complete", snapshot_id="abc")
    await ts.backups.check_free("volume", ["data"])
    restore = await ts.backups.insert_restore(await ts.backups.get(backup.id), "copy", None, True, me)
    assert await ts.backups.running_on("volume", ["copy", "data"]) == ("copy", restore.id)
    with pytest.raises(Conflict):
        await ts.backups.insert_restore(await ts.backups.get(backup.id), "copy", None, True, me)
    with pytest.raises(Conflict):
        await ts.backups.insert("volume", "copy", None, None, "local", me, {})
    await ts.backups.finish_restore(restore.id, "failed", "x")
    await ts.backups.check_free("volume", ["copy", "data"])
