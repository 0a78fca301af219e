"""Fuzzing SSH public keys (deploy_service's ssh_public_key, add_ssh_key).

An accepted key comes back as one clean authorized_keys line, 'type base64 [comment]', that normalises to
itself: printable ASCII, no options, of an allowed type (ed25519, ECDSA, their FIDO variants, RSA of at
least 3072 bits), its data valid base64 of a key blob of that same type that the key parser loads.
"""

from __future__ import annotations

import base64
import re
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import event, example, given
from hypothesis import strategies as st

from orchestrator.errors import InvalidInput
from orchestrator.ssh.keys import MIN_RSA_BITS, fingerprint, normalize_public_key

from .fuzzing import mutated, odd_chars, raw_text

LOADABLE = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}
FIDO = {"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"}
_COMMENT = re.compile(r"[\x21-\x7e]([\x20-\x7e]{0,98}[\x21-\x7e])?")


def _line(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


REAL_KEYS = [
    _line(ed25519.Ed25519PrivateKey.generate()),
    _line(ec.generate_private_key(ec.SECP256R1())),
    _line(ec.generate_private_key(ec.SECP384R1())),
    _line(ec.generate_private_key(ec.SECP521R1())),
    _line(rsa.generate_private_key(65537, 3072)),
    _line(rsa.generate_private_key(65537, 2048)),  # too weak
]


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


_P256 = ec.generate_private_key(ec.SECP256R1()).public_key()
COMPRESSED_ECDSA = (
    "ecdsa-sha2-nistp256 "
    + base64.b64encode(
        _string(b"ecdsa-sha2-nistp256")
        + _string(b"nistp256")
        + _string(_P256.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint))
    ).decode()
)
KINDS = sorted(LOADABLE | FIDO) + ["ssh-dss", "ssh-rsa1", "ssh-ed448", "x", ""]


@st.composite
def synthetic_keys(draw: st.DrawFn) -> str:
    """A line whose data is valid base64 of a blob that starts with a key type, then random bytes."""
    inner = draw(st.sampled_from(KINDS)).encode()
    size = len(inner) if draw(st.booleans()) else draw(st.sampled_from([0, 65, 2**32 - 1]))
    blob = struct.pack(">I", size) + inner + draw(st.binary(max_size=1100))
    said = inner.decode() if draw(st.booleans()) else draw(st.sampled_from(KINDS))
    return f"{said} {base64.b64encode(blob).decode()}"


@st.composite
def dressed(draw: st.DrawFn, line: str) -> str:
    """A key line with options before it, odd whitespace between its fields, a comment and line ends."""
    options = "" if draw(st.booleans()) else draw(st.sampled_from(['command="/bin/sh" ', 'from="*",no-pty ', "x "]))
    sep = draw(st.sampled_from([" ", " ", "\t", "  ", "\u2028", "\x0b", "\xa0"]))
    comment = draw(st.sampled_from(["", "", " me@laptop", " a  b", " " + "c" * 120]) | raw_text.map(" ".join))
    ends = "" if draw(st.booleans()) else draw(st.sampled_from(["\n", "\r\n", " ", "\n" + line]))
    return options + line.replace(" ", sep, 1) + comment + ends


keyish = (
    st.sampled_from(REAL_KEYS)
    | st.sampled_from(REAL_KEYS).flatmap(dressed)
    | synthetic_keys()
    | synthetic_keys().flatmap(dressed)
    | mutated(st.sampled_from(REAL_KEYS))
)


def assert_clean_if_accepted(text: str) -> None:
    try:
        line = normalize_public_key(text)
    except InvalidInput:
        return
    assert normalize_public_key(line) == line
    assert all(" " <= c <= "~" for c in line), line
    kind, data, *comment = line.split(" ")
    event(f"accepted {kind}")
    assert kind in LOADABLE | FIDO
    assert not comment or _COMMENT.fullmatch(" ".join(comment))
    blob = base64.b64decode(data, validate=True)
    (size,) = struct.unpack(">I", blob[:4])
    assert blob[4 : 4 + size] == kind.encode()
    if kind in FIDO:
        assert len(blob) <= 1024
    else:
        key = serialization.load_ssh_public_key(f"{kind} {data}".encode())
        assert not isinstance(key, rsa.RSAPublicKey) or key.key_size >= MIN_RSA_BITS
        assert isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey)
    assert fingerprint(line).startswith("SHA256:")


@given(text=keyish)
@example(text=COMPRESSED_ECDSA)
def test_an_accepted_key_is_one_clean_line_of_an_allowed_type(text: str) -> None:
    assert_clean_if_accepted(text)


@given(text=raw_text | st.text(odd_chars) | st.text(st.sampled_from("AQZ+/= \tsh-ed25519")))
def test_raw_text_is_refused_or_a_clean_key_line(text: str) -> None:
    assert_clean_if_accepted(text)
