"""Hypothesis strategies shared by the fuzz tests of tenant-input validators (``test_fuzz_*.py``).

Two kinds: raw text, and near-valid input built from the grammar a validator expects with something
changed (one character, an odd separator, an address spelled another way), which is where validators
go wrong.
"""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

__all__ = [
    "ODD",
    "hostnames",
    "ipv4_addresses",
    "ipv4_spellings",
    "ipv6_addresses",
    "ipv6_spellings",
    "mutated",
    "odd_chars",
    "raw_text",
    "repeated",
]

# Characters that break validators: controls, Unicode separators and whitespace, lookalikes of ASCII
# letters (dotted and dotless i, long s, Kelvin sign, fullwidth and Cyrillic a, e acute), zero-width space
# and BOM, and punctuation that means something to shells, URLs, Dockerfiles, env files and regexes.
ODD = (
    "\x00\x01\t\n\r\x0b\x0c\x1b\x1c\x1f \x7f\x85\xa0\u1680\u2028\u2029\u200b\ufeff"
    "\u0130\u0131\u017f\u212a\uff41\u0430\u00e9"
    "-_.,:;/\\@%$`'\"{}[]()<>#?=+~*!&|^"
)

_ENDS = ["\n", "\r\n", "\x00", " ", "\t"]  # what a regex's $ or a strip() lets through, or a C string ends at
odd_chars = st.sampled_from(ODD)
raw_text = st.text() | st.text(odd_chars) | st.text(st.characters(max_codepoint=0x7F))


@st.composite
def _edit(draw: st.DrawFn, valid: st.SearchStrategy[str]) -> str:
    text = draw(valid)
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from(_ENDS) | odd_chars | st.characters() | st.sampled_from("aZ09"))
    kind = draw(st.sampled_from(["replace", "insert", "delete", "upper", "prefix", "suffix"]))
    if kind == "replace" and at < len(text):
        return text[:at] + char + text[at + 1 :]
    if kind == "delete" and at < len(text):
        return text[:at] + text[at + 1 :]
    if kind == "upper":
        return text[:at] + text[at:].upper()
    if kind == "prefix":
        return char + text
    if kind == "suffix":
        return text + char
    return text[:at] + char + text[at:]


def mutated(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid strings as they are, and with one or two edits: a character replaced, inserted or deleted,
    the tail upper-cased, or an odd character at either end."""
    return valid | _edit(valid) | _edit(_edit(valid))


def repeated(chunks: list[str], tails: tuple[str, ...] = ("", "!", "\n", "/", ":", "@")) -> st.SearchStrategy[str]:
    """Long repetitions of a chunk with a tail that makes the whole fail late: bait for a regex that backtracks."""
    return st.builds(
        lambda head, chunk, n, tail: head + chunk * n + tail,
        st.sampled_from(["", "a", "a/", "x.com/"]),
        st.sampled_from(chunks),
        st.integers(20, 300),
        st.sampled_from(tails),
    )


_NOTABLE_V4 = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.170.2",
    "100.64.0.1",
    "100.100.100.200",
    "224.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "8.8.8.8",
    "1.1.1.1",
]
_NOTABLE_V6 = [
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "2001:db8::1",
    "2606:4700:4700::1111",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::a9fe:a9fe",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::808:808",
]

ipv4_addresses = st.sampled_from([ipaddress.IPv4Address(a) for a in _NOTABLE_V4]) | st.builds(
    ipaddress.IPv4Address, st.integers(0, 2**32 - 1)
)
ipv6_addresses = (
    st.sampled_from([ipaddress.IPv6Address(a) for a in _NOTABLE_V6])
    | st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
    | st.builds(lambda v4: ipaddress.IPv6Address(f"::ffff:{v4}"), ipv4_addresses)
    | st.builds(lambda v4: ipaddress.IPv6Address(f"::{v4}"), ipv4_addresses)
    | st.builds(lambda v4: ipaddress.IPv6Address(f"64:ff9b::{v4}"), ipv4_addresses)
)


@st.composite
def _number(draw: st.DrawFn, value: int) -> str:
    base = draw(st.sampled_from([10, 8, 16]))
    if base == 10:
        return str(value)
    if base == 8:
        return "0" * draw(st.integers(1, 3)) + (format(value, "o") if value else "")
    digits = format(value, draw(st.sampled_from(["x", "X"])))
    return draw(st.sampled_from(["0x", "0X"])) + "0" * draw(st.integers(0, 2)) + digits


@st.composite
def ipv4_spellings(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    """``ip`` written as C's inet_aton reads it: 1 to 4 parts, each decimal, octal or hex."""
    count = draw(st.integers(1, 4))
    head, last = list(ip.packed[: count - 1]), int.from_bytes(ip.packed[count - 1 :], "big")
    return ".".join(draw(_number(v)) for v in [*head, last])


@st.composite
def ipv6_spellings(draw: st.DrawFn, ip: ipaddress.IPv6Address) -> str:
    """``ip`` compressed, exploded, upper-cased, or with its last 32 bits dotted."""
    forms = [ip.compressed, ip.exploded, ip.compressed.upper()]
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    high = ipaddress.IPv6Address(int(ip) & ~0xFFFFFFFF).exploded.rsplit(":", 2)[0]
    forms.append(f"{high}:{low}")
    return draw(st.sampled_from(forms))


_LABELS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True) | st.sampled_from(
    ["localhost", "LOCALHOST", "xn--bcher-kva", "example", "com", "internal", "metadata", "0x7f", "127", "1"]
)
hostnames = (
    st.lists(_LABELS, min_size=1, max_size=4).map(".".join)
    | st.builds(lambda h: h + ".", st.lists(_LABELS, min_size=1, max_size=3).map(".".join))
    | ipv4_addresses.flatmap(ipv4_spellings)
    | ipv6_addresses.flatmap(ipv6_spellings).map(lambda h: f"[{h}]")
    | mutated(st.sampled_from(["example.com", "localhost", "127.0.0.1", "[::1]", "bücher.de", "ｅxample.com"]))
)
