"""SSH keys: validation of the public keys agents hand in, and the platform's per-service host keys.

Accepted: ed25519, ECDSA (nistp256/384/521), their FIDO (sk-) variants, and RSA of at least 3072 bits.
Refused: DSA, shorter RSA, anything malformed, and authorized_keys options (``command=...``): the line
that reaches sshd is rebuilt from the parsed key, so nothing but a key can be smuggled in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import InvalidInput

__all__ = ["MIN_RSA_BITS", "fingerprint", "generate_host_key", "normalize_public_key"]

MIN_RSA_BITS = 3072
_LOADABLE = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}
_FIDO = {"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"}
_WEAK = {"ssh-dss": "DSA keys are weak and disabled in OpenSSH", "ssh-rsa1": "RSA1 keys are obsolete"}
_COMMENT = re.compile(r"^[\x21-\x7e]([\x20-\x7e]{0,98}[\x21-\x7e])?$")
_HINT = "paste one line of a .pub file, e.g. from `ssh-keygen -t ed25519`"


def _blob_type(blob: bytes) -> str:
    if len(blob) < 4:
        raise ValueError("short")
    (size,) = struct.unpack(">I", blob[:4])
    if size > 64 or len(blob) < 4 + size:
        raise ValueError("bad type length")
    return blob[4 : 4 + size].decode("ascii")


def normalize_public_key(text: str) -> str:
    """One OpenSSH public key line, checked and rebuilt as 'type base64 [comment]'.

    Raises: InvalidInput when it is malformed, weak, carries options or is of an unsupported type.
    """
    line = text.strip()
    if not line:
        raise InvalidInput("ssh public key is empty", _HINT)
    if "\n" in line or "\r" in line or "\x00" in line:
        raise InvalidInput("ssh public key spans several lines; pass one key per call", _HINT)
    if len(line) > 16384:
        raise InvalidInput("ssh public key is too long", _HINT)
    parts = line.split()
    kind = parts[0]
    if kind in _WEAK:
        raise InvalidInput(f"ssh public key refused: {_WEAK[kind]}", "use an ed25519 key: ssh-keygen -t ed25519")
    if kind not in _LOADABLE | _FIDO:
        if any(t in _LOADABLE | _FIDO for t in parts[1:]):
            raise InvalidInput("authorized_keys options (e.g. command=, from=) are not accepted", _HINT)
        raise InvalidInput(f"unsupported or malformed ssh public key (type {kind[:40]!r})", _HINT)
    if len(parts) < 2:
        raise InvalidInput("ssh public key has no key data after its type", _HINT)
    encoded, comment = parts[1], " ".join(parts[2:])
    try:
        blob = base64.b64decode(encoded, validate=True)
        inner = _blob_type(blob)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("ssh public key data is not valid base64 of an SSH key", _HINT) from exc
    if inner != kind:
        raise InvalidInput(f"ssh public key says {kind} but holds a {inner[:40]} key", _HINT)
    if kind in _LOADABLE:
        try:
            key = serialization.load_ssh_public_key(f"{kind} {encoded}".encode())
        except (ValueError, TypeError, struct.error, NotImplementedError, UnsupportedAlgorithm) as exc:
            # NotImplementedError: an ECDSA key with a compressed point, which the parser does not take
            raise InvalidInput("ssh public key is malformed", _HINT) from exc
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise InvalidInput(
                f"RSA key of {key.key_size} bits is too weak (minimum {MIN_RSA_BITS})",
                "use an ed25519 key (ssh-keygen -t ed25519) or RSA of 3072+ bits",
            )
        if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise InvalidInput(f"unsupported ssh key type {kind}", _HINT)
    elif len(blob) > 1024:
        raise InvalidInput("ssh public key is malformed", _HINT)
    if comment and not _COMMENT.match(comment):
        comment = ""  # only the key matters; a comment with odd characters is dropped, not trusted
    return f"{kind} {encoded}" + (f" {comment}" if comment else "")


def fingerprint(public_key_line: str) -> str:
    """SHA256 fingerprint as `ssh-keygen -l` prints it."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def generate_host_key() -> tuple[str, str, str]:
    """A new ed25519 host key: (private key in OpenSSH PEM, public key line, fingerprint)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public, fingerprint(public)
