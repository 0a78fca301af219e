"""Ports for the tests' own servers (agenthost, Caddy, S3, an ACME CA, Nomad agents), shared by both suites."""

from __future__ import annotations

import random
import socket

__all__ = ["free_port"]

# Below the kernel's ephemeral range (32768-60999 by default), from which it picks the source port of every
# outgoing connection and Docker its published ports, and below the dynamic ports Nomad hands its tasks
# (20000-32000). A port the kernel picked (bind to port 0) was once taken by another process's connection
# in the moment before the test's server bound it, with the two e2e runs and the unit suite busy at once.
_RANGE = (15000, 19999)


def free_port() -> int:
    """A TCP port that nothing is bound to now, from a range nothing on the machine hands out by itself."""
    for _ in range(100):
        port = random.randint(*_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {_RANGE[0]}-{_RANGE[1]} after 100 tries")
