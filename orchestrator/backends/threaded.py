"""Blocking streams (the docker SDK's, Nomad's log follow) read in worker threads, consumed as one async iterator."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

__all__ = ["merged_from_threads"]

T = TypeVar("T")
Producer = Callable[[], Generator[T, None, None]]


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
