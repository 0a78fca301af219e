"""Per-tenant caps and thread shares: one tenant's slow work never takes what the others need."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from pydantic import BaseModel

from mcp_server.registry import Call, ToolDef, run_tool
from orchestrator.backends.threaded import ThreadBudget, on_behalf_of
from orchestrator.errors import Busy
from orchestrator.fairness import TenantSlots
from orchestrator.models import Principal
from orchestrator.platform import Platform
from orchestrator.secrets import SecretBox
from orchestrator.settings import Settings
from orchestrator.store import Store

pytestmark = pytest.mark.anyio


def test_slots_refuse_past_the_cap_per_tenant_and_free_on_exit() -> None:
    slots = TenantSlots("execs", "tenant_max_concurrent_execs", 2)
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(Busy) as err, slots.hold("a"):
            pass
        assert err.value.code == "busy" and err.value.status == 429 and err.value.retry_after_s == 2.0
        assert "2 execs" in err.value.message and "tenant_max_concurrent_execs" in err.value.message
        assert "retry in 2 s" in err.value.hint
        assert err.value.to_dict()["retry_after_s"] == 2.0
        with slots.hold("b"):  # another tenant's count is its own
            assert (slots.in_use("a"), slots.in_use("b")) == (2, 1)
    assert slots.in_use("a") == 0
    with pytest.raises(RuntimeError), slots.hold("a"):
        raise RuntimeError("the holder failed")
    assert slots.in_use("a") == 0  # given back on errors too


async def test_a_tenant_holds_at_most_its_share_of_backend_threads() -> None:
    budget = ThreadBudget(total=3, per_tenant=2)
    release = threading.Event()
    entered: list[str] = []
    done: list[str] = []

    def slow(name: str) -> None:
        entered.append(name)
        release.wait(30)

    async def greedy(name: str) -> None:
        with on_behalf_of("a"):
            await budget.run_sync(lambda: slow(name))
        done.append(name)

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(greedy, f"a{i}")
        # A slot is taken before its thread runs: wait for both threads to be inside, not only for the count.
        with anyio.fail_after(10):
            while budget.in_use("a") < 2 or len(entered) < 2:
                await anyio.sleep(0.01)
        # Tenant a waits for its own share; another tenant and the platform's own work still get threads.
        with anyio.fail_after(10), on_behalf_of("b"):
            assert await budget.run_sync(lambda: "b answered") == "b answered"
        with anyio.fail_after(10):
            assert await budget.run_sync(lambda: "platform answered") == "platform answered"
        assert budget.in_use("a") == 2 and len(entered) == 2 and done == []
        release.set()
    assert sorted(done) == ["a0", "a1", "a2", "a3"]
    assert budget.in_use() == 0 and budget.in_use("a") == 0


def test_a_tenant_share_must_leave_threads_for_the_others() -> None:
    with pytest.raises(ValueError, match="must be below"):
        ThreadBudget(total=4, per_tenant=4)
    with pytest.raises(ValueError, match="must be below backend_max_threads"):
        Settings(backend_max_threads=8, tenant_max_backend_threads=8)


class _Out(BaseModel):
    ok: bool


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    store = await Store.open(tmp_path / "agenthost.db", SecretBox(os.urandom(32)))
    settings = Settings(data_dir=tmp_path, tenant_max_inflight=2)
    # The gate never touches the engine itself: no backend is needed to count calls.
    yield Platform(settings, store, cast(Any, None), builder=cast(Any, object()))
    await store.close()


async def test_the_gate_refuses_calls_past_the_tenants_cap_at_once(platform: Platform) -> None:
    gate = anyio.Event()
    entered = 0

    async def slow(call: Call) -> _Out:
        nonlocal entered
        entered += 1
        await gate.wait()
        return _Out(ok=True)

    async def quick(call: Call) -> _Out:
        return _Out(ok=True)

    def tool(fn: Any) -> ToolDef:
        return ToolDef(fn.__name__, fn, "", [], _Out, _Out, read_only=True, destructive=False, idempotent=True)

    a = Principal(tenant_id="t_a", tenant_name="a", key_id="k_a", role="member")
    b = Principal(tenant_id="t_b", tenant_name="b", key_id="k_b", role="member")
    results: list[BaseModel] = []

    async def held() -> None:
        results.append(await run_tool(tool(slow), Call(platform, a), {}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(held)
        tg.start_soon(held)
        with anyio.fail_after(10):
            while entered < 2:
                await anyio.sleep(0.01)
        with pytest.raises(Busy) as err:
            await run_tool(tool(quick), Call(platform, a), {})
        assert "2 tool calls" in err.value.message and "tenant_max_inflight" in err.value.message
        assert await run_tool(tool(quick), Call(platform, b), {}) == _Out(ok=True)
        assert results == []
        gate.set()
    assert len(results) == 2
    assert await run_tool(tool(quick), Call(platform, a), {}) == _Out(ok=True)  # the slots were given back
