"""The FakeBackend passes the protocol checks the real backends pass (tests/backend_protocol.py), and does
what its scripting promises."""

from __future__ import annotations

import pytest

from orchestrator.backends.base import Backend, ExecSpec
from orchestrator.errors import BackendUnavailable, InvalidInput
from tests.backend_protocol import check_exec, check_prepared_exec, check_volumes, check_workload_lifecycle, sample_spec
from tests.fakes import FakeBackend

pytestmark = pytest.mark.anyio

IMAGE = "example.test/base:1"


@pytest.fixture
def fake() -> FakeBackend:
    backend = FakeBackend(images={IMAGE})
    assert isinstance(backend, Backend)
    return backend


@pytest.mark.parametrize("check", [check_workload_lifecycle, check_exec, check_prepared_exec, check_volumes])
async def test_the_fake_passes_the_protocol_checks(fake: FakeBackend, check: object) -> None:
    assert callable(check)
    await check(fake, IMAGE)


async def test_scripted_exits_restarts_and_an_engine_that_is_away(fake: FakeBackend) -> None:
    spec = sample_spec(IMAGE)
    await fake.ensure_workload(spec)
    fake.crash(spec.id, 137, oom=True, restarts=2)
    st = await fake.workload_status(spec.id)
    assert (st.state, st.exit_code, st.oom_killed, st.restarts) == ("exited", 137, True, 2)
    fake.exit_at_start[IMAGE] = 3
    assert (await fake.start_workload(spec.id)).exit_code == 3
    with pytest.raises(InvalidInput):
        await fake.exec(spec.id, ExecSpec(["true"]))
    with pytest.raises(InvalidInput):
        await fake.set_node_eligibility("node-1", False)
    fake.available = False
    with pytest.raises(BackendUnavailable):
        await fake.workload_status(spec.id)
