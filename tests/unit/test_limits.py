"""Request limits: body size (through Starlette's TestClient) and JSON depth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from mcp_server.limits import BodyLimit, parse_json_body
from orchestrator.errors import InvalidInput


def _echo_size() -> Starlette:
    async def size(request: Request) -> Response:
        return JSONResponse({"bytes": len(await request.body())})

    return Starlette(routes=[Route("/", size, methods=["POST"])])


def test_body_limit_refuses_declared_and_counted_bodies() -> None:
    client = TestClient(BodyLimit(_echo_size(), max_bytes=1000))
    assert client.post("/", content=b"x" * 1000).json() == {"bytes": 1000}
    declared = client.post("/", content=b"x" * 1001)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "too_large"

    def chunks() -> Iterator[bytes]:
        yield from (b"x" * 300 for _ in range(4))

    counted = client.post("/", content=chunks())  # chunked: no Content-Length to trust
    assert counted.status_code == 413 and "1000 bytes" in counted.json()["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "nested deeper than 64"),
        (b'{"a": ' + b"[" * 64 + b"]" * 64 + b"}", "nested deeper than 64"),
        (b"\xff\xfe", "not JSON"),
        (b"{nope", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_bodies_are_invalid_input_never_a_crash(raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_json_body(raw, 64)
    assert needle in err.value.message


def test_bodies_within_the_depth_limit_parse() -> None:
    assert parse_json_body(b"", 64) == {}
    body = parse_json_body(b'{"a": ' + b"[" * 63 + b"]" * 63 + b"}", 64)
    assert list(body) == ["a"]
