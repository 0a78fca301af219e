from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import BaseModel, Field

from mcp_server.schema import compact_schema, output_schema
from orchestrator.errors import RateLimited
from orchestrator.models import NAME_PATTERN
from orchestrator.ratelimit import RateLimiter
from orchestrator.secrets import mask_secrets
from orchestrator.services import Service


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    for _ in range(60):
        limiter.check("t")
    with pytest.raises(RateLimited):
        limiter.check("t")
    limiter.check("other")  # buckets are per tenant
    now[0] += 1.0
    limiter.check("t")
    with pytest.raises(RateLimited):
        limiter.check("t")


def test_mask_secrets_longest_first() -> None:
    text = "pw=abcd1234 short=ab other=abcd1234-more"
    assert mask_secrets(text, ["abcd1234", "abcd1234-more", "ab"]) == "pw=**** short=ab other=****"


@pytest.mark.parametrize(
    "name,ok",
    [
        ("web", True),
        ("a", True),
        ("api-2", True),
        ("A", False),
        ("-a", False),
        ("a-", False),
        ("a_b", False),
        ("a" * 40, True),
        ("a" * 41, False),
    ],
)
def test_resource_names(name: str, ok: bool) -> None:
    import re

    assert bool(re.match(NAME_PATTERN, name)) is ok


class _Sample(BaseModel):
    port: int | None = Field(None, ge=1, le=65535, description="p")
    name: str = Field(pattern="^[a-z]+$", title="ignored")
    tags: list[str] | None = None


@pytest.mark.parametrize(
    "value",
    [
        {"name": "abc"},
        {"name": "abc", "port": None},
        {"name": "abc", "port": 80, "tags": ["x"]},
        {"name": "ABC"},
        {"name": "abc", "port": 0},
        {"name": "abc", "port": "80"},
        {"name": "abc", "tags": [1]},
        {},
    ],
)
def test_compact_schema_accepts_exactly_the_same(value: dict[str, object]) -> None:
    full = _Sample.model_json_schema()
    small = compact_schema(full)
    assert "title" not in str(small)

    def valid(schema: dict[str, object]) -> bool:
        try:
            jsonschema.validate(value, schema)
            return True
        except jsonschema.ValidationError:
            return False

    assert valid(full) == valid(small)


def test_output_schema_is_full_and_validates_real_output() -> None:
    from datetime import UTC, datetime

    svc = Service(
        id="svc_1",
        name="web",
        status="running",
        image="i",
        runtime="runsc",
        memory_mb=1,
        cpus=1,
        volumes=[{"name": "data", "path": "/data"}],
        created_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )
    schema = output_schema(Service)
    jsonschema.validate(svc.model_dump(mode="json", by_alias=True), schema)
    assert schema["properties"]["status"]["enum"] == ["deploying", "running", "stopped", "failed"]
    assert set(schema["required"]) == set(schema["properties"])  # the SDK sends every field
    mount = schema["$defs"]["VolumeMount"]
    assert set(mount["properties"]) == {"name", "path"} and mount["required"] == ["name", "path"]
    assert "default" not in json.dumps(schema)
    for wrong in ({"restarts": "many"}, {"status": "sleeping"}, {"volumes": [{"name": "data"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**svc.model_dump(mode="json"), **wrong}, schema)
    bare = svc.model_dump(mode="json")
    del bare["last_error"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bare, schema)
