"""The protocol checks the FakeBackend of the unit suite passes too (tests/backend_protocol.py), on the real
backends: Docker, the Nomad dev agent and the three-node cluster."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from orchestrator.backends.base import Backend
from tests.backend_protocol import check_exec, check_prepared_exec, check_volumes, check_workload_lifecycle

from .conftest import ALL_PLATFORMS
from .harness import AgentHost

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@ALL_PLATFORMS
@pytest.mark.parametrize("check", [check_workload_lifecycle, check_exec, check_prepared_exec, check_volumes])
async def test_the_backend_passes_the_protocol_checks(
    host: AgentHost, backend: Backend, platform_images: object, check: Callable[[Backend, str], Awaitable[None]]
) -> None:
    await check(backend, host.settings.image_base)
