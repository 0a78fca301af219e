"""The HTTPS proxy's production path: certificates from an ACME CA, not Caddy's internal one.

The CA is Pebble, Let's Encrypt's ACME test server (built by infra/pebble.sh), on 127.0.0.1 with an HTTPS
certificate of this test's own making; it resolves names through the test's DNS server (tests/dns_zone.py)
and validates each order by reaching Caddy on its HTTP port (http-01) or its HTTPS port (tls-alpn-01), as a
public CA reaches a host through its DNS record. Caddy is `agenthost ingress run`, trusting Pebble's
directory through AGENTHOST_INGRESS_ACME_CA_ROOT; clients trust only Pebble's root, which exists only while
Pebble runs: a certificate that verifies was issued by this ACME exchange.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.dns_zone import Zone, serve_zone

from .harness import call, connect, free_port, wait_for
from .proxy import Ingress, running_ingress

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

DOMAIN = "acme.test"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Pebble:
    directory: str
    root: Path  # the root Pebble's certificates chain to: what a web client trusts
    ports: tuple[int, int]  # Caddy's HTTPS and HTTP ports, where Pebble validates
    zone: Zone
    log: Path


def _tls_files(where: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 it signed: Pebble's own HTTPS. Returns (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agenthost test ACME directory CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(*[False] * 5, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = where / "ca.pem", where / "cert.pem", where / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    binary = (
        os.environ.get("AGENTHOST_PEBBLE_BIN")
        or subprocess.run(
            ["bash", str(REPO / "infra" / "pebble.sh"), "binary"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    where = tmp_path_factory.mktemp("pebble")
    ca, cert, key = _tls_files(where)
    listen, management = free_port(), free_port()
    ports = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{listen}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": ports[1],
            "tlsPort": ports[0],
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (where / "pebble.json").write_text(json.dumps(config))
    # No random sleeps before validating, and no nonces refused at random (both test clients' retries).
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    with serve_zone() as zone, open(where / "pebble.log", "wb") as log:
        argv = [binary, "-config", str(where / "pebble.json"), "-dnsserver", zone.resolver]
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        try:
            context = ssl.create_default_context(cafile=str(ca))

            def root() -> str:
                assert proc.poll() is None, (where / "pebble.log").read_text()
                try:
                    response = httpx.get(f"https://127.0.0.1:{management}/roots/0", verify=context, timeout=2)
                except httpx.HTTPError:
                    return ""
                return response.text if response.status_code == 200 else ""

            (where / "root.pem").write_text(wait_for(root, 30, what="Pebble to answer"))
            yield Pebble(f"https://127.0.0.1:{listen}/dir", where / "root.pem", ports, zone, where / "pebble.log")
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def acme_ingress(
    pebble: Pebble, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Ingress]:
    env = {
        "AGENTHOST_BASE_DOMAIN": DOMAIN,
        "AGENTHOST_INGRESS_INTERNAL_CA": "false",
        "AGENTHOST_INGRESS_ACME_CA": pebble.directory,
        "AGENTHOST_INGRESS_ACME_CA_ROOT": str(pebble.root.parent / "ca.pem"),
        "AGENTHOST_INGRESS_ACME_EMAIL": "ops@example.com",
        **getattr(request, "param", {}),
    }
    with running_ingress(tmp_path_factory, env, trust=pebble.root, ports=pebble.ports) as ingress:
        yield ingress


def _https_url(ingress: Ingress, service: str, tenant: str) -> str:
    return f"https://{service}-{tenant}.{DOMAIN}:{ingress.https_port}"


def _certified(ingress: Ingress, pebble: Pebble, url: str) -> tuple[int, str]:
    """The answer at ``url`` once Caddy holds a certificate for it that chains to Pebble's root (issuance takes
    Caddy and Pebble a few seconds)."""

    def served() -> tuple[int, str] | None:
        try:
            return ingress.get(url)
        except (httpx.HTTPError, ssl.SSLError):
            return None

    try:
        answer: tuple[int, str] = wait_for(served, 60, 0.5, f"a certificate for {url}")
    except AssertionError as exc:
        pebble_log = "\n".join(pebble.log.read_text(errors="replace").splitlines()[-15:])
        raise AssertionError(f"{exc}\n--- caddy\n{ingress.log_tail(30)}\n--- pebble\n{pebble_log}") from None
    return answer


async def test_a_routed_host_gets_its_certificate_from_the_acme_ca(
    pebble: Pebble, acme_ingress: Ingress, hello_image: str
) -> None:
    host = f"web-acme.{DOMAIN}"
    pebble.zone.addresses[host] = "127.0.0.1"  # its DNS record points at the proxy, as in production
    async with connect(acme_ingress.host, acme_ingress.host.tenant("acme"), "stdio") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000})
        url = _https_url(acme_ingress, "web", "acme")
        assert svc["url"] == url
        assert _certified(acme_ingress, pebble, url) == (200, "hello world")
        assert host in pebble.zone.queries  # Pebble looked the name up to validate the order
        http = httpx.get(f"http://127.0.0.1:{pebble.ports[1]}/x", headers={"Host": host}, timeout=10)
        assert http.status_code == 308 and http.headers["location"] == f"{url}/x"
        await call(client, "delete_service", {"service": "web", "confirm": True})


@pytest.mark.parametrize("acme_ingress", [{"AGENTHOST_INGRESS_ON_DEMAND_TLS": "true"}], indirect=True)
async def test_attack_on_demand_tls_issues_only_for_routed_hosts(
    pebble: Pebble, acme_ingress: Ingress, hello_image: str
) -> None:
    routed, unrouted = f"site-acme.{DOMAIN}", f"stranger-acme.{DOMAIN}"
    pebble.zone.addresses.update({routed: "127.0.0.1", unrouted: "127.0.0.1"})
    async with connect(acme_ingress.host, acme_ingress.host.tenant("acme"), "stdio") as client:
        await call(client, "deploy_service", {"name": "site", "image": hello_image, "port": 8000})
        # The certificate is obtained during the first handshake, which waits for it.
        url = _https_url(acme_ingress, "site", "acme")
        assert _certified(acme_ingress, pebble, url) == (200, "hello world")
        # A name nobody routes, whose DNS points here too (a wildcard record): no certificate is asked for,
        # so Pebble never looks it up, and the handshake fails.
        with pytest.raises(httpx.ConnectError):
            acme_ingress.get(_https_url(acme_ingress, "stranger", "acme"))
        assert unrouted not in pebble.zone.queries
        await call(client, "delete_service", {"service": "site", "confirm": True})
