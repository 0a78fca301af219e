"""One Docker engine as the platform uses it, shared by the backend (workloads) and the builder (images).

It holds the docker SDK client (made on first use), runs every SDK call in a worker thread of the
platform's thread budget with docker-py's errors translated (``run``), knows what marks this
platform's objects (``own``: the managed and instance labels), and owns the host's egress rules
and the networks workloads and build steps join: the shared egress bridges and tenant networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import anyio
import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.transport import UnixHTTPAdapter

from ...errors import AgentHostError, BackendUnavailable, Conflict, ImageNotFound, InvalidInput, NotFound
from ...labels import L_EGRESS, L_INSTANCE, L_MANAGED
from ...models import Egress
from ..threaded import ThreadBudget
from .inspect import UNANSWERED, InspectingApi, SocketInspect
from .net import EgressFilter, egress_network_name, ensure_bridge

__all__ = ["DockerEngine", "docker_errors"]

P = ParamSpec("P")
T = TypeVar("T")


@contextmanager
def docker_errors(what: str) -> Iterator[None]:
    """Translate docker-py and transport failures into the agenthost error tree."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFound(f"{what}: image not found ({exc.explanation})") from exc
    except docker.errors.NotFound as exc:
        raise NotFound(f"{what}: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(f"{what}: {exc.explanation}") from exc
        if exc.status_code == 400:
            raise InvalidInput(f"{what}: {exc.explanation}") from exc
        raise AgentHostError(f"{what}: docker engine error: {exc.explanation}") from exc
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise BackendUnavailable(f"{what}: docker engine unreachable ({exc})") from exc


class DockerEngine:
    def __init__(
        self,
        base_url: str | None = None,
        instance: str = "default",
        tenant_network_pool: str = "10.213.0.0/16",
        tenant_network_prefix: int = 24,
        egress: EgressFilter | None = None,
        threads: ThreadBudget | None = None,
    ) -> None:
        """``instance`` labels everything this platform creates, so two platforms sharing one engine
        (or a test run beside a development one) never take each other's workloads for orphans.
        ``egress`` is the host's egress filter (default: no allowlist, the tenant pool protected)."""
        self.base_url = base_url
        self.threads = threads or ThreadBudget()
        self.own = {L_MANAGED: "true", L_INSTANCE: instance}
        self.egress = egress or EgressFilter(protected=[tenant_network_pool])
        self._subnet_pool = ipaddress.ip_network(tenant_network_pool)
        self._subnet_prefix = tenant_network_prefix
        self._client: docker.DockerClient | None = None
        self._inspect: SocketInspect | None = None

    def client(self) -> docker.DockerClient:
        """The SDK client; call it from a worker thread (it connects on first use)."""
        if self._client is None:
            if self.base_url:
                self._client = docker.DockerClient(base_url=self.base_url, version="auto", timeout=120)
            else:
                self._client = docker.from_env(version="auto", timeout=120)
            if self._client.api.base_url.startswith("http+docker://"):
                # A unix socket has no proxy and no netrc: without this, requests reads the proxy variables and
                # ~/.netrc again on every engine call (a fifth of an inspect's time in the server's profile).
                self._client.api.trust_env = False
            adapter = self._client.api.get_adapter(self._client.api.base_url)
            if isinstance(adapter, UnixHTTPAdapter):
                self._inspect = SocketInspect(adapter.socket_path, self._client.api.api_version)
        return self._client

    def exec_api(self) -> Any:
        """docker-py's low-level client for an exec: its container and exec inspects skip requests on a unix
        socket (backends/docker/inspect.py)."""
        api = self.client().api
        return api if self._inspect is None else InspectingApi(api, self._inspect)

    def container(self, name: str) -> Container | None:
        """The container named ``name``, None when there is none; from a worker thread. On a unix socket the
        inspect skips requests (backends/docker/inspect.py); a failure there is docker-py's to report."""
        client = self.client()
        if (inspect := self._inspect) is not None:
            try:
                attrs = inspect.container(name)
            except UNANSWERED:
                pass  # docker-py's call below raises what the backend translates, or succeeds
            else:
                return None if attrs is None else client.containers.prepare_model(attrs)
        try:
            return client.containers.get(name)
        except docker.errors.NotFound:
            return None

    async def run(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` in a worker thread of the budget; docker-py's errors become ours, saying ``what`` failed."""

        def call() -> T:
            with docker_errors(what):
                return fn(*args, **kwargs)

        return await self.threads.run_sync(call)

    def filters(self, labels: dict[str, str]) -> dict[str, list[str]]:
        """A listing filter for this platform's objects that also carry ``labels``."""
        return {"label": [f"{k}={v}" for k, v in {**self.own, **labels}.items()]}

    async def image_exists(self, image: str) -> bool:
        def check() -> bool:
            try:
                self.client().images.get(image)
                return True
            except docker.errors.ImageNotFound:
                return False

        return await self.run(f"inspect image {image}", check)

    def ensure_network_sync(self, name: str, labels: dict[str, str], *, internal: bool, bridge: str) -> None:
        """A tenant network (internal) or a shared egress bridge, made unless it exists."""
        # Tenant networks belong to this platform; the shared egress bridges to every platform on the host.
        own = self.own if internal else {L_MANAGED: "true"}
        ensure_bridge(
            self.client(),
            name,
            {**own, **labels},
            internal=internal,
            bridge=bridge,
            pool=self._subnet_pool,
            prefix=self._subnet_prefix,
        )

    def ensure_egress_sync(self, policy: Egress) -> str:
        """The egress bridge of ``policy``, the host's rules converged first. Raises: NotSupported."""
        self.egress.ensure(policy)
        name = egress_network_name(policy)
        self.ensure_network_sync(name, {L_EGRESS: policy}, internal=False, bridge=name)
        return name

    async def close(self) -> None:
        if self._inspect is not None:
            self._inspect.close()
        if self._client is not None:
            await anyio.to_thread.run_sync(self._client.close)
            self._client = None
