"""The Nomad backend's mTLS and token plumbing: settings (ours and Nomad's own variables), the checks of the TLS
files, and real TLS handshakes against a local server that requires a client certificate, as a Nomad cluster with
``verify_https_client`` does, for the HTTP API (python-nomad) and the exec websockets' client (httpx2)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socketserver
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator.backends.nomad.api import NomadApi, NomadTls
from orchestrator.errors import BackendUnavailable, InvalidInput
from orchestrator.settings import Settings

from .conftest import serving

pytestmark = pytest.mark.anyio


def _cert(
    path: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, **san: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if "ip" in san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san["ip"]))]), critical=False
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / f"{name}-key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed; a second, foreign CA."""
    ca = _cert(tmp_path, "ca", None)
    _cert(tmp_path, "server", ca, ip="127.0.0.1")
    _cert(tmp_path, "client", ca)
    _cert(tmp_path, "other-ca", None)
    return tmp_path


def _handler(pki: Path, seen: list[dict[str, str]]) -> type[socketserver.BaseRequestHandler]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server-key.pem")
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # as Nomad's verify_https_client

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                conn = ctx.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # refused: no certificate, or one the CA did not sign
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
            peer = dict(x[0] for x in (conn.getpeercert() or {}).get("subject", ()))
            seen.append({"token": headers.get("X-Nomad-Token", ""), "peer": peer.get("commonName", "")})
            body = json.dumps({"ok": True}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n")
            conn.sendall(b"content-length: %d\r\n\r\n%s" % (len(body), body))
            conn.close()

    return Handler


def _tls(pki: Path, ca: str = "ca", client: bool = True) -> NomadTls:
    return NomadTls(
        pki / f"{ca}.pem", pki / "client.pem" if client else None, pki / "client-key.pem" if client else None
    )


def test_the_settings_honour_nomads_own_variables_and_ours_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOMAD_ADDR", "https://10.0.0.1:4646")
    monkeypatch.setenv("NOMAD_NAMESPACE", "theirs")
    monkeypatch.setenv("NOMAD_CACERT", "/etc/nomad/ca.pem")
    monkeypatch.setenv("NOMAD_CLIENT_CERT", "/etc/nomad/cli.pem")
    monkeypatch.setenv("NOMAD_CLIENT_KEY", "/etc/nomad/cli-key.pem")
    settings = Settings()
    assert settings.nomad_addr == "https://10.0.0.1:4646" and settings.nomad_namespace == "theirs"
    assert (settings.nomad_cacert, settings.nomad_client_cert, settings.nomad_client_key) == (
        Path("/etc/nomad/ca.pem"),
        Path("/etc/nomad/cli.pem"),
        Path("/etc/nomad/cli-key.pem"),
    )
    monkeypatch.setenv("AGENTHOST_NOMAD_NAMESPACE", "agenthost")
    monkeypatch.setenv("AGENTHOST_NOMAD_CACERT", "/srv/ah/ca.pem")
    settings = Settings()
    assert settings.nomad_namespace == "agenthost" and settings.nomad_cacert == Path("/srv/ah/ca.pem")


def test_tls_files_that_do_not_fit_are_refused_with_what_to_do(pki: Path) -> None:
    with pytest.raises(InvalidInput, match="go together"):
        NomadApi("https://127.0.0.1:1", None, "default", None, tls=NomadTls(None, pki / "client.pem", None))
    with pytest.raises(InvalidInput, match="https://"):
        NomadApi("http://127.0.0.1:1", None, "default", None, tls=_tls(pki))
    with pytest.raises(InvalidInput, match="does not exist"):
        NomadApi("https://127.0.0.1:1", None, "default", None, tls=NomadTls(pki / "nope.pem"))
    with pytest.raises(InvalidInput, match="unusable"):  # a key that is not the certificate's
        NomadApi(
            "https://127.0.0.1:1",
            None,
            "default",
            None,
            tls=NomadTls(pki / "ca.pem", pki / "client.pem", pki / "other-ca-key.pem"),
        )


def test_the_api_presents_the_client_certificate_and_the_token(pki: Path) -> None:
    seen: list[dict[str, str]] = []
    with serving(_handler(pki, seen)) as port:
        api = NomadApi(f"https://127.0.0.1:{port}", "s3cret", "agenthost", None, tls=_tls(pki))
        try:
            assert api.get("agent", "self") == {"ok": True}
        finally:
            api.close()
    assert seen == [{"token": "s3cret", "peer": "client"}]


def test_without_a_client_certificate_the_server_refuses_the_api(pki: Path) -> None:
    seen: list[dict[str, str]] = []
    with serving(_handler(pki, seen)) as port:
        api = NomadApi(f"https://127.0.0.1:{port}", "s3cret", "agenthost", None, tls=_tls(pki, client=False))
        try:
            with pytest.raises(BackendUnavailable):
                api.get("agent", "self")
        finally:
            api.close()
    assert seen == []


def test_a_server_the_ca_did_not_sign_is_not_trusted(pki: Path) -> None:
    seen: list[dict[str, str]] = []
    with serving(_handler(pki, seen)) as port:
        api = NomadApi(f"https://127.0.0.1:{port}", "s3cret", "agenthost", None, tls=_tls(pki, ca="other-ca"))
        try:
            with pytest.raises(BackendUnavailable):
                api.get("agent", "self")
        finally:
            api.close()
    assert seen == []  # the token never left


async def test_the_exec_websockets_client_presents_the_same_certificate_and_token(pki: Path) -> None:
    seen: list[dict[str, str]] = []
    with serving(_handler(pki, seen)) as port:
        api = NomadApi(f"https://127.0.0.1:{port}", "s3cret", "agenthost", None, tls=_tls(pki))
        assert api.websocket_url("client", "allocation", "a1", "exec", params={}).startswith(
            f"wss://127.0.0.1:{port}/v1/client/allocation/a1/exec?"
        )
        async with api.access.client() as client:
            response = await client.get(f"https://127.0.0.1:{port}/v1/agent/self")
        api.close()
    assert response.json() == {"ok": True}
    assert seen == [{"token": "s3cret", "peer": "client"}]


def test_the_backend_takes_its_tls_from_the_settings(pki: Path) -> None:
    seen: list[dict[str, str]] = []
    with serving(_handler(pki, seen)) as port:
        settings = Settings(
            backend="nomad",
            nomad_addr=f"https://127.0.0.1:{port}",
            nomad_token="s3cret",
            nomad_cacert=pki / "ca.pem",
            nomad_client_cert=pki / "client.pem",
            nomad_client_key=pki / "client-key.pem",
        )
        api = NomadApi.from_settings(settings)
        try:
            assert api.get("status", "leader") == {"ok": True}
        finally:
            api.close()
    assert seen == [{"token": "s3cret", "peer": "client"}]
    with pytest.raises(InvalidInput, match="go together"):
        NomadApi.from_settings(settings.model_copy(update={"nomad_client_key": None}))
