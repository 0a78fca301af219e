"""Proof that a tenant owns a domain: the TXT record ``_agenthost-challenge.<domain>`` holds the token its
claim was given. Looked up with dnspython at the resolver ``AGENTHOST_DNS_RESOLVER`` (default: the host's
own, from /etc/resolv.conf), with no cache of ours, so a record published a moment ago is seen once the
resolver serves it. CNAMEs are followed, so the record may be delegated."""

from __future__ import annotations

from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from ..dnsnames import parse_resolver
from .hosts import challenge_name

__all__ = ["TxtLookup", "lookup_txt"]


@dataclass(frozen=True)
class TxtLookup:
    """The TXT values found at ``name``, or why there are none (``problem``)."""

    name: str
    values: tuple[str, ...] = ()
    problem: str | None = None

    def proves(self, token: str) -> bool:
        return token in self.values

    def describe(self) -> str:
        if self.problem:
            return self.problem
        shown = ", ".join(repr(v[:80]) for v in self.values[:5])
        return f"it holds {shown}, not this claim's token"


def _resolver(address: str | None, timeout_s: float) -> dns.asyncresolver.Resolver:
    if address is None:
        resolver = dns.asyncresolver.Resolver()  # the host's: /etc/resolv.conf
    else:
        host, port = parse_resolver(address)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = timeout_s
    return resolver


async def lookup_txt(domain: str, resolver: str | None, timeout_s: float) -> TxtLookup:
    """The TXT record of ``domain``'s challenge name. Never raises for DNS answers: a missing record, a
    refusal or a timeout is a ``problem`` the caller reports."""
    name = challenge_name(domain)
    try:
        answer = await _resolver(resolver, timeout_s).resolve(name, "TXT", search=False)
    except dns.resolver.NXDOMAIN:
        return TxtLookup(name, problem="no such name in DNS (NXDOMAIN)")
    except dns.resolver.NoAnswer:
        return TxtLookup(name, problem="the name exists but has no TXT record")
    except dns.resolver.NoNameservers as exc:
        return TxtLookup(name, problem=f"no name server answered it ({exc})")
    except dns.exception.Timeout:
        return TxtLookup(name, problem=f"the resolver did not answer within {timeout_s:g} s")
    except dns.resolver.NoResolverConfiguration:
        return TxtLookup(name, problem="this host has no DNS resolver configured (AGENTHOST_DNS_RESOLVER)")
    except dns.exception.DNSException as exc:
        return TxtLookup(name, problem=f"the lookup failed ({type(exc).__name__}: {exc})")
    values = tuple(b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer)
    return TxtLookup(name, values=values)
