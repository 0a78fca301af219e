"""Secrets at rest: AES-256-GCM with a per-tenant key derived from the master key by HKDF.

API keys are ``ah_<keyid>.<secret>``; only SHA-256 of the 256-bit secret is stored
(a slow hash adds nothing for a uniformly random 256-bit secret) and it is
compared in constant time.

Secrets in output: ``mask_secrets`` hides the values a service or database was handed in text
shown to a caller (logs, exec output, crash reports, error messages).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _stdlib_secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import AgentHostError, Unauthorized

__all__ = [
    "SecretBox",
    "TenantCipher",
    "hash_key_secret",
    "load_master_key",
    "mask_secrets",
    "new_api_key",
    "parse_api_key",
    "secret_matches",
    "write_master_key",
]

_NONCE = 12


def write_master_key(path: Path) -> bytes:
    """Create a new 256-bit master key readable only by its owner."""
    key = os.urandom(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def load_master_key(path: Path) -> bytes:
    """Raises: AgentHostError when the key is missing, unreadable or world-readable."""
    try:
        mode = path.stat().st_mode & 0o777
        key = path.read_bytes()
    except FileNotFoundError as exc:
        raise AgentHostError(f"no master key at {path}", "run `agenthost init` to create the data dir") from exc
    if mode & 0o077:
        raise AgentHostError(f"master key {path} is readable by others (mode {mode:o})", f"chmod 600 {path}")
    if len(key) != 32:
        raise AgentHostError(f"master key {path} is corrupt ({len(key)} bytes)", "restore it from your backup")
    return key


class TenantCipher:
    """AES-256-GCM bound to one tenant; ``aad`` binds a ciphertext to the record it belongs to."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        # A key of its own for fingerprints: a plain hash of a short secret could be guessed offline.
        self._mac = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fingerprint").derive(key)

    def encrypt(self, plaintext: bytes, aad: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad.encode())

    def decrypt(self, blob: bytes, aad: str) -> bytes:
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad.encode())
        except InvalidTag as exc:
            raise AgentHostError(
                "a stored secret failed its integrity check", "the data dir or master key was altered"
            ) from exc

    def encrypt_str(self, plaintext: str, aad: str) -> bytes:
        return self.encrypt(plaintext.encode(), aad)

    def decrypt_str(self, blob: bytes, aad: str) -> str:
        return self.decrypt(blob, aad).decode()

    def fingerprint(self, text: str) -> str:
        """A keyed hash of ``text`` (HMAC-SHA256, 16 hex digits): equal texts match, and it tells nothing of
        the text to whoever lacks the tenant's key."""
        return hmac.new(self._mac, text.encode(), hashlib.sha256).hexdigest()[:16]


class SecretBox:
    def __init__(self, master_key: bytes) -> None:
        self._master = master_key
        self._cache: dict[str, TenantCipher] = {}

    def for_tenant(self, tenant_id: str) -> TenantCipher:
        cipher = self._cache.get(tenant_id)
        if cipher is None:
            key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=b"agenthost-v1", info=f"tenant:{tenant_id}".encode()
            ).derive(self._master)
            cipher = self._cache[tenant_id] = TenantCipher(key)
        return cipher


def new_api_key() -> tuple[str, str, bytes]:
    """Return (full key, key id, secret hash)."""
    key_id = _stdlib_secrets.token_hex(8)
    secret = _stdlib_secrets.token_urlsafe(32)
    return f"ah_{key_id}.{secret}", key_id, hash_key_secret(secret)


def parse_api_key(key: str) -> tuple[str, str]:
    """Raises: Unauthorized when the key is not of the form ah_KEYID.SECRET."""
    prefix, _, secret = key.strip().partition(".")
    if not prefix.startswith("ah_") or not secret or len(prefix) != 19:
        raise Unauthorized("malformed API key")
    return prefix[3:], secret


def hash_key_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_key_secret(secret), stored_hash)


def mask_secrets(text: str, secrets: list[str]) -> str:
    for value in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(value, "****")
    return text
