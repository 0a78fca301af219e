"""Is a published endpoint answering? An HTTP answer of any status, or a TCP peer that keeps the line open.

A bare TCP connect is not enough: the engine's port publisher accepts connections even
when nothing listens inside the container, and then closes them at once.
"""

from __future__ import annotations

import ssl
from functools import cache

import anyio
import httpx

from ..models import HealthCheck

__all__ = ["endpoint_answers"]


@cache
def _tls() -> ssl.SSLContext:
    """Made once: httpx makes a fresh one (about 20 ms of CPU) for every client otherwise, and a deploy polls
    readiness every 100 ms. The check speaks plain HTTP, so the context is never used for a connection."""
    return ssl.create_default_context()


async def endpoint_answers(host: str, port: int, check: HealthCheck, timeout_s: float = 2.0) -> bool:
    if check.type == "none":
        return True
    if check.type == "http":
        try:
            # trust_env off: the workload's own address is checked, never through a proxy from the environment.
            async with httpx.AsyncClient(timeout=timeout_s, verify=_tls(), trust_env=False) as client:
                await client.get(f"http://{host}:{port}{check.path}")
            return True
        except httpx.HTTPError:
            return False
    try:
        with anyio.fail_after(timeout_s):
            stream = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError):
        return False
    async with stream:
        with anyio.move_on_after(0.3):
            try:
                await stream.receive(1)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return False
        return True
