"""Nomad's placement, restart and stop waits are short blocking queries: a worker thread is held for one query
at a time, never for the whole wait, so the same tenant's next call gets one while the scheduler takes its time."""

from __future__ import annotations

import threading
from typing import Any, cast

import anyio
import pytest

from orchestrator.backends.nomad import NomadBackend
from orchestrator.backends.nomad import backend as nomad_backend
from orchestrator.backends.nomad.volumes import volume_meta_path
from orchestrator.backends.threaded import ThreadBudget, on_behalf_of
from orchestrator.errors import BackendUnavailable, NotFound

pytestmark = pytest.mark.anyio

INSTANCE = "inst"


class SlowCluster:
    """One job on a fake Nomad API. Its allocation shows what was asked of the job (a new version, a stop)
    only once ``settle`` is set: until then the scheduler is still at work."""

    def __init__(self, workload_id: str) -> None:
        self.jid = f"ah-{workload_id}"
        meta = {"agenthost.instance": INSTANCE, "agenthost.id": workload_id}
        self.job: dict[str, Any] = {"ID": self.jid, "Version": 0, "Stop": False, "Meta": meta}
        self.shown = {"version": 0, "stopped": False}
        self.settle = threading.Event()
        self.polls = 0
        self.items: dict[str, str] = {"AGENTHOST_SPEC_HASH": "h"}
        self.namespace = "default"
        self.restarts_asked = 0
        self.restarted = 0
        self.blocking: list[tuple[str, float, dict[str, Any]]] = []  # (path, wait_s, params) of blocking queries

    def get(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        if self.settle.is_set():
            self.shown = {"version": self.job["Version"], "stopped": self.job["Stop"]}
            self.restarted = self.restarts_asked
        if parts == ("var", f"nomad/jobs/{self.jid}"):
            return {"Items": self.items, "ModifyIndex": 1}
        if parts == ("nodes",):
            return []
        if parts == ("job", self.jid):
            return dict(self.job)
        if parts[0] == "evaluation":
            self.polls += 1
            return {"Status": "complete" if self.settle.is_set() else "pending"}
        if parts in (("allocations",), ("allocation", "a")):
            self.polls += 1
            stopped = self.shown["stopped"]
            alloc = {"ID": "a", "JobVersion": self.shown["version"], "CreateIndex": self.shown["version"]}
            alloc |= {"NodeName": "n1", "DesiredStatus": "stop" if self.job["Stop"] else "run"}
            task = {"State": "dead" if stopped else "running", "Restarts": self.restarted}
            alloc = {**alloc, "ClientStatus": "complete" if stopped else "running", "TaskStates": {"main": task}}
            return alloc if parts[0] == "allocation" else [alloc]
        raise NotFound(f"no {'/'.join(parts)}")

    def get_blocking(self, *parts: str, index: int, wait_s: float, params: dict[str, Any] | None = None) -> Any:
        self.blocking.append(("/".join(parts), wait_s, dict(params or {})))
        if index:
            self.settle.wait(0.05)  # Nomad answers once something changed, or at the end of the wait
        return self.get(*parts, params=params), index + 1

    def put(self, *parts: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        assert parts == ("var", f"nomad/jobs/{self.jid}")
        self.items = body["Items"]
        return {"ModifyIndex": 2}

    def post(self, *parts: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        if parts == ("client", "allocation", "a", "restart"):
            self.restarts_asked += 1
            return {}
        assert parts == ("jobs",)
        self.job = {**body["Job"], "Version": self.job["Version"] + 1}
        return {"EvalID": f"eval-{self.job['Version']}"}

    def delete(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        if parts == ("job", self.jid):
            self.job["Stop"] = True
        return {}


async def _meanwhile(backend: NomadBackend, api: SlowCluster, tenant: str, slow: Any) -> Any:
    """Start ``slow`` for ``tenant``; once it is waiting on Nomad, the same tenant's next engine call must
    still get a thread (the tenant's share is one), and only then does Nomad settle."""
    out: list[Any] = []
    api.settle.clear()
    api.polls = 0

    async def run() -> None:
        with on_behalf_of(tenant):
            out.append(await slow())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            while api.polls < 3:
                await anyio.sleep(0.01)
        with anyio.fail_after(10), on_behalf_of(tenant):
            assert (await backend.nodes()) == []
        assert out == []  # still waiting on Nomad
        api.settle.set()
    return out[0]


@pytest.fixture
def cluster() -> tuple[NomadBackend, SlowCluster]:
    api = SlowCluster("svc_1")
    return NomadBackend(cast(Any, api), INSTANCE, ["dc1"], "default", threads=ThreadBudget(2, 1)), api


async def test_a_restart_is_in_place_waits_without_holding_a_thread_and_counts_no_crash(
    cluster: tuple[NomadBackend, SlowCluster],
) -> None:
    backend, api = cluster
    status = await _meanwhile(backend, api, "t_a", lambda: backend.restart_workload("svc_1"))
    assert api.restarts_asked == 1 and api.job["Version"] == 0  # the allocation restarted, no new job version
    assert status.state == "running" and status.restarts == 0
    assert api.items["AGENTHOST_RESTARTS_ASKED"] == "a 1"


async def test_stop_and_remove_wait_for_the_allocations_without_holding_a_thread(
    cluster: tuple[NomadBackend, SlowCluster],
) -> None:
    backend, api = cluster
    await _meanwhile(backend, api, "t_a", lambda: backend.stop_workload("svc_1", timeout_s=1))
    assert api.job["Stop"] and api.shown["stopped"]
    api.job["Stop"], api.shown["stopped"] = False, False  # started again
    assert await _meanwhile(backend, api, "t_a", lambda: backend.remove_workload("svc_1")) is True


async def test_a_watch_is_one_short_blocking_query_on_the_job_s_allocations(
    cluster: tuple[NomadBackend, SlowCluster],
) -> None:
    backend, api = cluster
    st, index = await backend.watch_workload("svc_1", 0, 0)
    assert st.state == "running" and st.endpoints == {} and index == 1
    st, index = await backend.watch_workload("svc_1", index, 600)
    assert st.state == "running" and index == 2
    # A worker thread is held for at most WAIT_S per query however long the caller waits; the allocations come
    # with their ports (resources) and only the job's.
    assert [(path, wait) for path, wait, _ in api.blocking] == [("allocations", 0), ("allocations", 2.0)]
    assert api.blocking[-1][2] == {"resources": "true", "filter": 'JobID == "ah-svc_1"'}


class VolumeNode:
    """A fake Nomad API with one volume recorded on node n1: removing it runs the platform's batch job there,
    which Nomad places and finishes only once ``settle`` is set."""

    def __init__(self) -> None:
        self.var = volume_meta_path(INSTANCE, "ah-t_a-data")
        self.items: dict[str, str] | None = {"agenthost.instance": INSTANCE, "node": "n1"}
        self.job: dict[str, Any] | None = None
        self.purged: list[str] = []
        self.settle = threading.Event()
        self.polls = 0
        self.namespace = "default"

    def get(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        if parts == ("var", self.var) and self.items is not None:
            return {"Items": self.items, "ModifyIndex": 1}
        if parts == ("nodes",):
            return []
        if parts == ("node", "n1"):
            return {"ID": "n1", "Status": "ready"}
        if self.job is not None and parts == ("job", self.job["ID"]):
            return {**self.job, "Version": 0}
        if parts[0] == "evaluation":
            self.polls += 1
            return {"Status": "complete"}
        if parts == ("allocations",):
            self.polls += 1
            if not self.settle.is_set():
                return []
            done = {"State": "dead", "Events": [{"Type": "Terminated", "Details": {"exit_code": "0"}}]}
            alloc = {"ID": "a1", "NodeID": "n1", "JobVersion": 0, "CreateIndex": 1, "ClientStatus": "complete"}
            return [{**alloc, "TaskStates": {"main": done}}]
        raise NotFound(f"no {'/'.join(parts)}")

    def get_blocking(self, *parts: str, index: int, wait_s: float, params: dict[str, Any] | None = None) -> Any:
        if index:
            self.settle.wait(0.05)
        return self.get(*parts, params=params), index + 1

    def get_text(self, *parts: str, params: dict[str, Any] | None = None) -> bytes:
        assert params is not None
        return b'{"removed": true}\n' if params["type"] == "stdout" else b""

    def post(self, *parts: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        if parts == ("jobs", "parse"):
            return {"TaskGroups": [{"Tasks": [{"Config": {}}]}]}
        assert parts == ("jobs",)
        self.job = body["Job"]
        return {"EvalID": "eval-1"}

    def delete(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        if parts == ("var", self.var):
            self.items = None
        elif self.job is not None and parts == ("job", self.job["ID"]):
            self.purged.append(parts[1])
        return {}


async def test_removing_a_volume_waits_for_its_node_job_without_holding_a_thread() -> None:
    api = VolumeNode()
    backend = NomadBackend(cast(Any, api), INSTANCE, ["dc1"], "default", threads=ThreadBudget(2, 1))
    out: list[bool] = []

    async def remove() -> None:
        with on_behalf_of("t_a"):
            out.append(await backend.remove_volume("ah-t_a-data"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(remove)
        with anyio.fail_after(10):
            while api.polls < 3:
                await anyio.sleep(0.01)
        with anyio.fail_after(10), on_behalf_of("t_a"):
            assert (await backend.nodes()) == []
        assert out == []  # the job on the node has not finished
        api.settle.set()
    assert out == [True]
    assert api.job is not None and api.purged == [api.job["ID"]]  # the platform's job is gone
    assert api.items is None  # and so is the volume's record


async def test_a_remove_that_runs_out_of_time_names_each_allocation_still_running(
    cluster: tuple[NomadBackend, SlowCluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, api = cluster
    monkeypatch.setattr(nomad_backend, "_STOP_WAIT_S", 0.2)  # the scheduler never settles here
    with pytest.raises(BackendUnavailable) as err:
        await backend.remove_workload("svc_1")
    assert err.value.message == (
        "Nomad removed the job of svc_1, but after 0 s not all of it has stopped: allocation a (job version 0) "
        "on node n1: client running, desired stop"
    )
