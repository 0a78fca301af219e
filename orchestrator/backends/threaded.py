"""The one bridge between the event loop and engines' blocking SDKs (docker, python-nomad).

Calls: every docker / python-nomad call runs in a worker thread. A backend's calls draw from a budget of
their own (``ThreadBudget``; not anyio's default limiter, which file work and everything else share), and
the calls made on behalf of one tenant take at most ``per_tenant`` of its tokens: a tenant whose calls are
slow (a container that ignores SIGTERM, an engine busy with its images) waits for its own share to free up
while every other tenant's calls still find threads. The tenant is the one of the tool call being served
(``on_behalf_of``, set by the API gate); the platform's own work (reconciler, warm pool, builds) has none
and draws from the whole budget. Long waits (placement, stop, readiness) never sleep inside a thread: they
poll with short calls and sleep in the event loop between them.

Streams: blocking streams (the docker SDK's logs, Nomad's log follow) are read in worker threads and
consumed as one async iterator (``merged_from_threads``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["ThreadBudget", "merged_from_threads", "on_behalf_of"]

T = TypeVar("T")
Producer = Callable[[], Generator[T, None, None]]

_tenant: ContextVar[str | None] = ContextVar("agenthost_tenant", default=None)


@contextmanager
def on_behalf_of(tenant_id: str) -> Iterator[None]:
    """Backend calls made inside (and in tasks started inside) count against ``tenant_id``'s thread share."""
    token = _tenant.set(tenant_id)
    try:
        yield
    finally:
        _tenant.reset(token)


class ThreadBudget:
    def __init__(self, total: int = 32, per_tenant: int = 4) -> None:
        if not 0 < per_tenant < total:
            raise ValueError(f"a tenant's share of backend threads ({per_tenant}) must be below the total ({total})")
        self.total = total
        self.per_tenant = per_tenant
        self._all = anyio.CapacityLimiter(total)
        # A tenant's limiter and how many of its calls use it; dropped when none does.
        self._tenants: dict[str, tuple[anyio.CapacityLimiter, int]] = {}

    async def run_sync(self, fn: Callable[[], T], *, abandon_on_cancel: bool = False) -> T:
        tenant = _tenant.get()
        if tenant is None:
            return await anyio.to_thread.run_sync(fn, abandon_on_cancel=abandon_on_cancel, limiter=self._all)
        limiter, users = self._tenants.get(tenant) or (anyio.CapacityLimiter(self.per_tenant), 0)
        self._tenants[tenant] = (limiter, users + 1)
        try:
            async with limiter:
                return await anyio.to_thread.run_sync(fn, abandon_on_cancel=abandon_on_cancel, limiter=self._all)
        finally:
            limiter, users = self._tenants[tenant]
            if users == 1:
                del self._tenants[tenant]
            else:
                self._tenants[tenant] = (limiter, users - 1)

    def in_use(self, tenant_id: str | None = None) -> int:
        """Threads busy with calls, of one tenant or of all."""
        if tenant_id is None:
            return int(self._all.borrowed_tokens)
        found = self._tenants.get(tenant_id)
        return int(found[0].borrowed_tokens) if found else 0


async def merged_from_threads(producers: Sequence[Producer[T]], buffer: int = 256) -> AsyncIterator[T]:
    """The items of every producer as they come; ends when all producers have ended, with the first
    error one of them raised.

    Each producer runs in a daemon thread of its own, not in a task group: the consumer may stop
    iterating at any point without closing this generator, and a task group must be left by the
    task that entered it. Once the consumer is gone, a producer stops at its next item and its
    generator is closed (its ``finally`` releases the engine's stream).
    """
    send, receive = anyio.create_memory_object_stream[T](buffer)
    stop = threading.Event()
    errors: list[BaseException] = []
    token = anyio.lowlevel.current_token()

    def pump(produce: Producer[T], out: MemoryObjectSendStream[T]) -> None:
        items = produce()
        try:
            for item in items:
                if stop.is_set():
                    break
                try:
                    anyio.from_thread.run(out.send, item, token=token)
                except (anyio.BrokenResourceError, RuntimeError):
                    break  # the consumer is gone, or its event loop has ended
        except Exception as exc:  # the consumer raises it once the stream ends
            errors.append(exc)
        finally:
            items.close()
            try:
                anyio.from_thread.run_sync(out.close, token=token)
            except RuntimeError:
                pass  # the event loop has ended

    for produce in producers:
        threading.Thread(target=pump, args=(produce, send.clone()), name="agenthost-stream", daemon=True).start()
    send.close()  # the clones keep the stream open until the last producer ends
    try:
        async with receive:
            async for item in receive:
                yield item
        if errors:
            raise errors[0]
    finally:
        stop.set()
