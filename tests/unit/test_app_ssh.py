"""SSH access to services through the REST face over the in-memory engine: keys, the sidecar, ssh_info."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fakes import FakeBackend

from .site import APP_IMAGE, Site


def _public_key(comment: str) -> str:
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return f"{raw.decode()} {comment}"


def test_keys_open_and_close_ssh_access(site: Site, fake_backend: FakeBackend) -> None:
    first = _public_key("laptop")
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=first)
    assert svc["status"] == "running", svc
    assert fake_backend.running("sidecar")
    info = site.call("ssh_info", service="web")
    assert info["ready"] is True and info["command"].startswith("ssh -p "), info
    assert [k["comment"] for k in info["authorized_keys"]] == ["laptop"]
    second = _public_key("ci")
    added = site.call("add_ssh_key", service="web", public_key=second)
    assert {k["comment"] for k in added["authorized_keys"]} == {"laptop", "ci"}, added
    site.call("add_ssh_key", service="web", public_key=second, remove=True)
    closed = site.call("add_ssh_key", service="web", public_key=first, remove=True)
    assert closed["authorized_keys"] == [] and closed["ready"] is False, closed
    assert not fake_backend.running("sidecar")
    assert site.call("ssh_info", service="web")["error"]["code"] == "invalid_input"


def test_a_bad_key_is_refused_and_nothing_starts(site: Site, fake_backend: FakeBackend) -> None:
    bad = site.call("deploy_service", name="web", image=APP_IMAGE, ssh_public_key="ssh-rsa AAAA not-a-key")
    assert bad["error"]["code"] == "invalid_input", bad
    assert not fake_backend.workloads
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert site.call("add_ssh_key", service="web", public_key="nonsense")["error"]["code"] == "invalid_input"
    assert site.call("ssh_info", service="nope")["error"]["code"] == "not_found"
