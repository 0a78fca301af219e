"""The wire contract in pure logic: /openapi.json is valid OpenAPI 3.1, unknown arguments are named, error
statuses and Retry-After, and the MCP shapes of results and errors."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mcp_server import __version__
from mcp_server import tools as _tools  # noqa: F401  (fills the registry)
from mcp_server.limits import error_response
from mcp_server.registry import REGISTRY, check_known
from mcp_server.rest import rest_routes
from mcp_server.schema import input_schema
from mcp_server.wire import error_result, protocol_error, tool_result
from orchestrator.errors import (
    BackendUnavailable,
    Busy,
    ConfirmationRequired,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    RateLimited,
)
from orchestrator.models import Deleted
from orchestrator.ratelimit import RateLimiter


def _openapi(read_only: bool) -> dict[str, Any]:
    state = SimpleNamespace(platform=SimpleNamespace(settings=SimpleNamespace(read_only=read_only)))
    app = Starlette(routes=rest_routes(lambda: state))  # type: ignore[arg-type, return-value]
    with TestClient(app) as client:
        answer = client.get("/openapi.json")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.mark.parametrize("read_only", [False, True])
def test_openapi_is_valid_and_every_ref_resolves(read_only: bool) -> None:
    doc = _openapi(read_only)
    validate(doc)  # raises OpenAPIValidationError
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == __version__
    schemas = doc["components"]["schemas"]
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(doc)))
    assert refs, "no $ref at all"
    for ref in refs:
        section, _, name = ref.removeprefix("#/components/").partition("/")
        assert ref.startswith("#/components/") and name in doc["components"][section], ref
    assert "$defs" not in json.dumps(doc)
    served = {path.removeprefix("/v1/tools/") for path in doc["paths"] if path.startswith("/v1/tools/")}
    assert served == {td.name for td in REGISTRY.values() if td.read_only or not read_only}
    assert "deploy_service_args" in schemas or read_only


def test_openapi_documents_the_idempotency_key_on_mutations() -> None:
    paths = _openapi(False)["paths"]
    header = {"$ref": "#/components/parameters/IdempotencyKey"}
    assert header in paths["/v1/tools/deploy_service"]["post"]["parameters"]
    assert "Idempotent-Replay" in paths["/v1/tools/deploy_service"]["post"]["responses"]["200"]["headers"]
    assert "parameters" not in paths["/v1/tools/whoami"]["post"]
    assert "Retry-After" in paths["/v1/tools/whoami"]["post"]["responses"]["429"]["headers"]


def test_unknown_arguments_are_named_with_the_known_ones() -> None:
    check_known(REGISTRY["get_service"], {"service": "web"})
    with pytest.raises(InvalidInput) as err:
        check_known(REGISTRY["delete_service"], {"service": "web", "keep_volume": True})
    assert "'keep_volume'" in err.value.message and "keep_volumes" in err.value.message, err.value.message
    with pytest.raises(InvalidInput) as err:
        check_known(REGISTRY["whoami"], {"b": 1, "a": 2})
    assert "arguments for whoami: 'a', 'b'; it takes no arguments" in err.value.message, err.value.message


def test_statuses_tell_waiting_from_asking() -> None:
    assert (QuotaExceeded("x").status, ConfirmationRequired("x").status) == (403, 409)
    assert isinstance(ConfirmationRequired("x"), InvalidInput)  # a client that does not know it falls back
    limiter = RateLimiter(per_minute=2, clock=lambda: 0.0)
    limiter.check("t")
    limiter.check("t")
    with pytest.raises(RateLimited) as err:
        limiter.check("t")
    assert err.value.status == 429 and err.value.retry_after_s == 30.0
    answer = error_response(err.value)
    assert answer.status_code == 429 and answer.headers["retry-after"] == "30"
    assert json.loads(answer.body)["error"]["retry_after_s"] == 30.0
    assert error_response(Busy("x", retry_after_s=0.2)).headers["retry-after"] == "1"  # whole seconds, never 0
    assert "retry-after" not in error_response(QuotaExceeded("x")).headers


def test_mcp_results_and_errors_are_structured_and_compact() -> None:
    ok = tool_result(Deleted(kind="service", name="wé", id="s_1", removed=["container"]))
    assert not ok.is_error and ok.structured_content == {
        "kind": "service",
        "name": "wé",
        "id": "s_1",
        "removed": ["container"],
    }
    assert ok.content[0].text == '{"kind":"service","name":"wé","id":"s_1","removed":["container"]}'  # type: ignore[union-attr]
    failed = error_result(Busy("too many", retry_after_s=2))
    assert failed.is_error and failed.meta == {"agenthost/code": "busy"}
    assert failed.structured_content == {
        "code": "busy",
        "message": "too many",
        "hint": "retry in 2 s",
        "retry_after_s": 2,
    }
    assert failed.content[0].text == "[busy] too many (hint: retry in 2 s)"  # type: ignore[union-attr]
    assert protocol_error(NotFound("gone")).error.code == INVALID_PARAMS
    assert protocol_error(NotFound("gone")).error.data["code"] == "not_found"
    assert protocol_error(BackendUnavailable("down")).error.code == INTERNAL_ERROR


def test_listed_input_schemas_are_closed_and_small() -> None:
    whoami = input_schema(REGISTRY["whoami"].args_model.model_json_schema())
    assert whoami == {"additionalProperties": False, "type": "object"}, whoami
    delete = input_schema(REGISTRY["delete_service"].args_model.model_json_schema())
    assert delete["additionalProperties"] is False and delete["required"] == ["service"]
    assert "default" not in delete["properties"]["confirm"], delete  # an omitted flag is off
