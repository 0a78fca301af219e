"""A small authoritative DNS server on 127.0.0.1 for tests of domain ownership and ACME: it answers TXT
queries from a dict the test edits (``records``), A queries from another (``addresses``) and NXDOMAIN for
every other name, over UDP, with dnspython's message codec. Test traffic never leaves 127.0.0.1."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["Zone", "serve_zone"]


@dataclass
class Zone:
    """TXT records by name (without the trailing dot); what the server answers, read at each query."""

    records: dict[str, list[str]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # A records: name -> IPv4
    port: int = 0
    queries: list[str] = field(default_factory=list)

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(name)
        values = self.records.get(name)
        if name in self.addresses:  # an A record, and no data (not NXDOMAIN) for every other type
            if question.rdtype == dns.rdatatype.A:
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, dns.rdatatype.A, self.addresses[name])
                )
        elif values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and values:
            quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
            response.answer.append(
                dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, *quoted)
            )
        return response.to_wire()


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(self.server.zone.answer(data), self.client_address)


class _Server(socketserver.ThreadingUDPServer):
    daemon_threads = True

    def __init__(self, zone: Zone) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.zone = zone


class _StreamHandler(socketserver.StreamRequestHandler):
    """DNS over TCP (what some resolvers use, Pebble's among them): each message behind its 2-byte length."""

    server: _StreamServer

    def handle(self) -> None:
        while len(head := self.rfile.read(2)) == 2:
            answer = self.server.zone.answer(self.rfile.read(int.from_bytes(head, "big")))
            self.wfile.write(len(answer).to_bytes(2, "big") + answer)


class _StreamServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, zone: Zone) -> None:
        super().__init__(("127.0.0.1", zone.port), _StreamHandler)
        self.zone = zone


@contextmanager
def serve_zone() -> Iterator[Zone]:
    """Serve a new, empty zone on a free port of 127.0.0.1, over UDP and TCP, until the block ends."""
    zone = Zone()
    servers: list[socketserver.BaseServer] = [_Server(zone)]
    zone.port = servers[0].server_address[1]  # type: ignore[index]
    servers.append(_StreamServer(zone))
    threads = [
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True) for server in servers
    ]
    for thread in threads:
        thread.start()
    try:
        yield zone
    finally:
        for server, thread in zip(servers, threads, strict=True):
            server.shutdown()
            server.server_close()
            thread.join()
