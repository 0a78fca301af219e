"""The HTTP app over the in-memory engines, as the unit tests drive it (fixtures in conftest.py)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import pytest
from starlette.testclient import TestClient

from orchestrator.backends.base import WorkloadStatus
from orchestrator.platform import Platform

__all__ = ["APP_IMAGE", "Site"]

APP_IMAGE = "example.test/app:1"
T = TypeVar("T")


@dataclass
class Site:
    """The HTTP app with its platform open; ``admin`` is the bootstrap key, ``key`` a member key of tenant 'acme'."""

    client: TestClient
    platform: Platform
    admin: str
    key: str = ""

    def call(self, tool: str, key: str | None = None, headers: dict[str, str] | None = None, **args: Any) -> Any:
        """POST /v1/tools/<tool>; the JSON answer (an error as ``{"error": ...}``) with ``status`` added."""
        sent = {"authorization": f"Bearer {key or self.key}", **(headers or {})}
        response = self.client.post(f"/v1/tools/{tool}", json=args, headers=sent)
        answer = response.json()
        answer["status_code"] = response.status_code
        return answer

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a coroutine on the app's event loop (where the platform lives)."""
        portal = self.client.portal
        assert portal is not None
        return portal.call(fn, *args)

    def until(self, check: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = 10) -> None:
        """Wait, on the app's loop (where the background tasks run), until ``check()`` holds (a coroutine's
        answer is awaited there); bounded."""

        async def holds() -> bool:
            answer = check()
            return await answer if inspect.isawaitable(answer) else answer

        async def wait() -> None:
            with anyio.fail_after(timeout_s):
                while not await holds():
                    await anyio.sleep(0.02)

        try:
            self.run(wait)
        except TimeoutError:
            raise AssertionError(f"not within {timeout_s} s: {what}") from None

    def reconcile_marking(self, monkeypatch: pytest.MonkeyPatch, table: str, workload_id: str, desired: str) -> None:
        """One reconciler pass in which, right after the pass asks the engine about ``workload_id``, its record in
        ``table`` ("services" or "databases") is marked ``desired``: a delete or a stop that comes between the
        pass's look at the container and its repair (the delete then removes what it finds, here nothing)."""
        tenant = self.call("whoami")["tenant_id"]
        backend = self.platform.backend
        status = backend.workload_status

        async def marked_meanwhile(asked: str) -> WorkloadStatus:
            st = await status(asked)
            if asked == workload_id:
                await getattr(self.platform.store.scoped(tenant), table).update(workload_id, desired_state=desired)
            return st

        monkeypatch.setattr(backend, "workload_status", marked_meanwhile)
        self.run(self.platform.reconciler.reconcile_once)
