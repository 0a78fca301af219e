"""Host names of routed services: always a valid DNS label, and never the same for two (service, tenant)
pairs (orchestrator/ingress/hosts.py); base domains in punycode (orchestrator/settings.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.ingress.hosts import service_host, service_label
from orchestrator.models import NAME_PATTERN
from orchestrator.settings import Settings, is_dns_label, normalize_domain

from .fuzzing import raw_text

service_names = st.from_regex(NAME_PATTERN.replace(r"^", r"\A").replace("$", r"\Z"))
# Tenant names made with the CLI are not checked against NAME_PATTERN: any text.
tenant_names = service_names | raw_text.filter(bool)


@given(service_names, tenant_names)
def test_a_label_is_a_valid_dns_label(service: str, tenant: str) -> None:
    label = service_label(service, tenant)
    assert is_dns_label(label) and len(label) <= 63, label


@given(st.tuples(service_names, tenant_names), st.tuples(service_names, tenant_names))
def test_two_pairs_never_share_a_label(a: tuple[str, str], b: tuple[str, str]) -> None:
    if a != b:
        assert service_label(*a) != service_label(*b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("web-a", "b"), ("web", "a-b")),  # the split a plain "<service>-<tenant>" would get wrong
        (("web", "acme"), ("web", "Acme")),
        (("web", "café"), ("web", "cafe")),
        (("a" * 40, "t" * 40), ("a" * 40, "t" * 41)),  # too long: cut, but the digest tells them apart
    ],
)
def test_pairs_that_look_alike_get_different_labels(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert service_label(*a) != service_label(*b)


def test_plain_names_give_a_readable_host() -> None:
    assert service_host("web", "acme", "apps.example.com") == "web-acme.apps.example.com"
    assert service_label("api-2", "team7") == "api-2-team7"
    odd = service_label("web", "big-corp")
    assert odd.startswith("web-big-corp-0") and len(odd) == len("web-big-corp-0") + 12


@pytest.mark.parametrize(
    ("given_domain", "stored"),
    [
        ("Apps.Example.COM.", "apps.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
    ],
)
def test_base_domains_are_stored_in_punycode(given_domain: str, stored: str) -> None:
    assert normalize_domain(given_domain) == stored
    assert Settings(base_domain=given_domain).base_domain == stored


@pytest.mark.parametrize(
    "domain", ["", "a..b", "-x.example", "x_y.example", "ab--c.example", "a b.example", "x." * 100]
)
def test_invalid_base_domains_are_refused(domain: str) -> None:
    with pytest.raises(ValueError, match="DNS label|domain|too long"):
        normalize_domain(domain)


@given(raw_text)
def test_normalize_domain_gives_dns_labels_or_refuses(text: str) -> None:
    try:
        domain = normalize_domain(text)
    except ValueError:
        return
    assert all(is_dns_label(label) for label in domain.split(".")) and len(domain) <= 253 - 64
