"""Tenant networks take distinct subnets, also when first deploys race (orchestrator/backends/docker/net.py)."""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

import docker.errors
import docker.types
import pytest

from orchestrator.backends.docker.net import ensure_bridge

POOL = ipaddress.ip_network("10.213.0.0/16")


class _Net:
    def __init__(self, name: str, subnet: str | None) -> None:
        self.name = name
        self.attrs: dict[str, Any] = {"IPAM": {"Config": [{"Subnet": subnet}] if subnet else []}}


class _Networks:
    """Docker's network API as far as ensure_bridge uses it: the engine refuses a subnet that overlaps one it
    holds, listed or not (a network being removed still holds its subnet)."""

    def __init__(self, held: tuple[str, ...] = (), meet: threading.Barrier | None = None) -> None:
        self.nets: list[_Net] = []
        self.held = [ipaddress.ip_network(s) for s in held]
        self.overlaps = 0
        self.meet = meet
        self._lock = threading.Lock()

    def list(self, names: list[str] | None = None, **_: Any) -> list[_Net]:
        with self._lock:
            found = [n for n in self.nets if names is None or n.name in names]
        if names is None and self.meet is not None:
            try:
                # Two first deploys that read the engine's networks at the same time (unless something
                # serialises them, when the barrier times out) both see the same free subnet.
                self.meet.wait()
            except threading.BrokenBarrierError:
                pass
        return found

    def create(self, name: str, ipam: docker.types.IPAMConfig | None = None, **_: Any) -> _Net:
        subnet = ipam["Config"][0]["Subnet"] if ipam else None
        with self._lock:
            taken = self.held + [
                ipaddress.ip_network(c["Subnet"]) for n in self.nets for c in n.attrs["IPAM"]["Config"]
            ]
            if subnet and any(ipaddress.ip_network(subnet).overlaps(t) for t in taken):
                self.overlaps += 1
                raise docker.errors.APIError(
                    "overlap", explanation="Pool overlaps with other one on this address space"
                )
            net = _Net(name, subnet)
            self.nets.append(net)
            return net


class _Client:
    def __init__(self, networks: _Networks) -> None:
        self.networks = networks


def _ensure(client: _Client, tenant: str) -> None:
    ensure_bridge(
        client,  # type: ignore[arg-type]
        f"ah-net-{tenant}",
        {"agenthost.tenant": tenant},
        internal=True,
        bridge=f"ah-{tenant}",
        pool=POOL,
        prefix=24,
    )


def test_concurrent_first_deploys_never_pick_the_same_subnet() -> None:
    networks = _Networks(meet=threading.Barrier(2, timeout=1))
    client = _Client(networks)
    errors: list[BaseException] = []

    def deploy(tenant: str) -> None:
        try:
            _ensure(client, tenant)
        except BaseException as exc:  # reported below, with the test's assertion
            errors.append(exc)

    threads = [threading.Thread(target=deploy, args=(t,)) for t in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert networks.overlaps == 0
    subnets = {n.attrs["IPAM"]["Config"][0]["Subnet"] for n in networks.nets}
    assert subnets == {"10.213.0.0/24", "10.213.1.0/24"}


def test_a_subnet_the_engine_still_holds_is_passed_over() -> None:
    networks = _Networks(held=("10.213.0.0/24", "10.213.1.0/24"))
    _ensure(_Client(networks), "alice")
    assert [n.attrs["IPAM"]["Config"][0]["Subnet"] for n in networks.nets] == ["10.213.2.0/24"]
    assert networks.overlaps == 2


def test_a_pool_the_engine_holds_entirely_is_an_error_after_five_tries() -> None:
    networks = _Networks(held=("10.213.0.0/16",))
    with pytest.raises(docker.errors.APIError, match="overlaps"):
        _ensure(_Client(networks), "alice")
    assert networks.overlaps == 5 and networks.nets == []
