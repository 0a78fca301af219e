"""Fuzzing the outermost edges: a REST request's JSON body, the bearer token, service_logs' since, and the
operator's lists that shape what tenants reach (AGENTHOST_EGRESS_ALLOW, AGENTHOST_IMAGE_ALLOW).

An accepted REST body is a JSON object nested at most max_depth deep whose every string (keys too) is
valid Unicode text: a lone UTF-16 surrogate escape (``"\\ud800"``), which Python's JSON decoder lets
through and nothing behind it can encode, is refused here as the MCP transports refuse it. An accepted
token has the shape ah_KEYID.SECRET. Any since service_logs accepts is a time between the epoch and now.
An accepted egress allowlist is a list of normalised IPv4 CIDRs. Each is refused with the platform's error
(InvalidInput, Unauthorized; ValueError or pydantic's ValidationError for settings), never RecursionError,
OverflowError or UnicodeError.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from mcp_server.limits import parse_json_body
from orchestrator.errors import InvalidInput, Unauthorized
from orchestrator.secrets import hash_key_secret, parse_api_key
from orchestrator.services.requests import logs_since
from orchestrator.settings import Settings, parse_cidrs

from .fuzzing import ipv4_addresses, ipv6_addresses, mutated, raw_text

MAX_DEPTH = 8

any_text = st.text() | st.text(st.characters() | st.characters(categories=["Cs"]))  # Cs: surrogates
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=12,
)


def _nested(depth: int, leaf: str) -> str:
    opens = "".join("[" if i % 2 else '{"k":' for i in range(depth))
    closes = "".join("]" if i % 2 else "}" for i in reversed(range(depth)))
    return opens + leaf + closes


bodies = (
    json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(any_text, json_values, max_size=3).map(lambda v: json.dumps(v).encode())
    | st.builds(_nested, st.integers(1, 3000), st.sampled_from(["1", '"\\ud800"', "[]"])).map(str.encode)
    | st.builds(
        lambda d, e: json.dumps(d).encode(e),
        st.dictionaries(any_text, any_text, max_size=2),
        st.sampled_from(["utf-16", "utf-32", "utf-16-le"]),
    )
    | st.binary()
    | raw_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
)


def _strings(value: Any) -> list[str]:
    out, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            out += list(item)
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
    return out


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@given(raw=bodies)
@example(raw=b'{"env": {"A": "\\ud800"}}')
@example(raw=b'{"\\udfff": 1}')
def test_an_accepted_rest_body_is_a_shallow_object_of_encodable_text(raw: bytes) -> None:
    try:
        body = parse_json_body(raw, MAX_DEPTH)
    except InvalidInput:
        return
    assert isinstance(body, dict) and _depth(body) <= MAX_DEPTH
    for text in _strings(body):
        text.encode()  # what the store, the audit log and every check that measures bytes will do


# -- bearer tokens --------------------------------------------------------------------------------------

tokens = mutated(st.sampled_from(["ah_0123456789abcdef.c2VjcmV0", "ah_0123456789abcdef.", "ah_.x"])) | raw_text.map(
    lambda t: t.encode("latin-1", "replace").decode("latin-1")  # header values arrive decoded as latin-1
)


@given(token=tokens)
def test_an_accepted_api_key_has_the_documented_shape(token: str) -> None:
    try:
        key_id, secret = parse_api_key(token)
    except Unauthorized:
        return
    assert len(key_id) == 16 and secret and token.strip() == f"ah_{key_id}.{secret}"
    assert len(hash_key_secret(secret)) == 32


# -- service_logs' since ---------------------------------------------------------------------------------

NOW = 1_750_000_000.0


@given(since_s=st.integers(min_value=1) | st.integers(10**9, 10**400))
@example(since_s=10**12)
def test_any_since_a_tenant_may_pass_is_a_time_between_the_epoch_and_now(since_s: int) -> None:
    since = logs_since(since_s, NOW)
    assert since is not None and datetime.fromtimestamp(0, UTC) <= since <= datetime.fromtimestamp(NOW, UTC)


# -- the operator's allowlists --------------------------------------------------------------------------

cidr_items = (
    ipv4_addresses.map(str)
    | st.builds(lambda ip, n: f"{ip}/{n}", ipv4_addresses, st.integers(-1, 33))
    | st.builds(lambda ip, n: f"{ip}/{n}", ipv6_addresses, st.integers(0, 129))
    | mutated(st.sampled_from(["10.0.0.0/8", "192.168.5.7", "0.0.0.0/0", "10.0.0.1/8"]))
)
cidr_values = (
    st.lists(cidr_items, max_size=4).map(",".join)
    | st.lists(cidr_items, max_size=4).map(" ".join)
    | st.lists(cidr_items | st.integers(), max_size=4).map(json.dumps)
    | st.lists(cidr_items | st.integers() | st.none(), max_size=4)
    | st.integers(1, 5000).map(lambda n: "[" * n + "]" * n)
    | raw_text
)


@given(value=cidr_values)
@example(value="[" * 5000)
def test_an_accepted_egress_allowlist_is_normal_ipv4_cidrs(value: Any) -> None:
    try:
        cidrs = parse_cidrs(value)
    except ValueError:
        return
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        assert net.version == 4 and str(net) == cidr


@given(egress=cidr_values, images=st.integers(1, 5000).map(lambda n: "[" * n) | raw_text | mutated(st.just('["a/*"]')))
@example(egress="[]", images="[" * 5000)
def test_settings_refuse_bad_allowlists_with_a_validation_error(egress: Any, images: str) -> None:
    try:
        settings = Settings(egress_allow=egress, image_allow=images)
    except ValidationError:
        return
    assert all(ipaddress.ip_network(c).version == 4 for c in settings.egress_allow)
    assert all(isinstance(p, str) and p == p.strip() and p for p in settings.image_allow)
