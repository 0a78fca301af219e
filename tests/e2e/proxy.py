"""A real Caddy for e2e tests of the HTTPS proxy (`agenthost ingress run`), on ports of its own on 127.0.0.1,
programmed by the platform over its admin socket; requests carry the route's host name in SNI and Host and go
to 127.0.0.1 (no DNS), trusting Caddy's internal CA from the data dir."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .harness import TEST_IMAGES_ENV, VENV_BIN, AgentHost, free_port, wait_for

__all__ = ["DOMAIN", "Ingress", "running_ingress"]

DOMAIN = "ingress.localhost"


@dataclass
class Ingress:
    host: AgentHost
    https_port: int
    caddy: subprocess.Popen[bytes] | None = None
    trust: Path | None = None  # the root clients trust; None: Caddy's internal CA

    @property
    def ca(self) -> Path:
        if self.trust is not None:
            return self.trust
        return self.host.data_dir / "ingress" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    def url(self, service: str, tenant: str) -> str:
        return f"https://{service}-{tenant}.{DOMAIN}:{self.https_port}"

    def get(self, url: str, sni: str | None = None) -> tuple[int, str]:
        """GET ``url`` from 127.0.0.1, with its host name in Host and in SNI (or ``sni``), verified against
        Caddy's CA."""
        target = httpx.URL(url)
        name = target.raw_host.decode("ascii")  # as sent on the wire: punycode (``host`` would decode it)
        context = ssl.create_default_context(cafile=str(self.ca))
        with httpx.Client(verify=context, timeout=10) as client:
            response = client.get(
                f"https://127.0.0.1:{target.port}{target.raw_path.decode()}",
                headers={"Host": f"{name}:{target.port}"},
                extensions={"sni_hostname": sni or name},
            )
        return response.status_code, response.text

    def log_tail(self, lines: int = 20) -> str:
        """The end of Caddy's log, for a failure's message."""
        return "\n".join((self.host.data_dir / "ingress.log").read_text(errors="replace").splitlines()[-lines:])

    def start_caddy(self) -> None:
        log = open(self.host.data_dir / "ingress.log", "ab")  # noqa: SIM115
        self.caddy = subprocess.Popen(
            [str(VENV_BIN / "agenthost"), "ingress", "run"], env=self.host.process_env(), stdout=log, stderr=log
        )

        def serving() -> bool:
            assert self.caddy is not None and self.caddy.poll() is None, (
                self.host.data_dir / "ingress.log"
            ).read_text()
            if self.trust is not None:  # ACME: no certificate for a host nobody routes; the admin socket is up
                return self.host.settings.ingress_socket.exists()
            try:
                # A host nobody routes: TLS works (the wildcard certificate is there) and the 404 answers.
                return self.ca.exists() and self.get(self.url("nobody", "nowhere"))[0] == 404
            except (httpx.HTTPError, ssl.SSLError):
                return False

        wait_for(serving, 30, what="Caddy to serve HTTPS")

    def stop_caddy(self) -> None:
        if self.caddy is not None:
            self.caddy.terminate()
            try:
                self.caddy.wait(10)
            except subprocess.TimeoutExpired:
                self.caddy.kill()
                self.caddy.wait(10)
            self.caddy = None


@contextmanager
def running_ingress(
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str] | None = None,
    trust: Path | None = None,
    ports: tuple[int, int] | None = None,
) -> Iterator[Ingress]:
    """A platform on a new data dir with its Caddy serving HTTPS (settings ``env`` added) on ``ports`` (HTTPS,
    HTTP; default: free ones), trusted by ``trust`` (default: Caddy's internal CA), until the block ends."""
    https_port, http_port = ports or (free_port(), free_port())
    settings = {
        **TEST_IMAGES_ENV,
        "AGENTHOST_BASE_DOMAIN": DOMAIN,
        "AGENTHOST_INGRESS_INTERNAL_CA": "true",
        "AGENTHOST_INGRESS_BIND": "127.0.0.1",
        "AGENTHOST_INGRESS_HTTPS_PORT": str(https_port),
        "AGENTHOST_INGRESS_HTTP_PORT": str(http_port),
        **(env or {}),
    }
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp("ingress-data")), env=settings)
    host.init()
    proxy = Ingress(host, https_port, trust=trust)
    try:
        proxy.start_caddy()
        yield proxy
    finally:
        proxy.stop_caddy()
        host.stop()
        host.cleanup_engine()
