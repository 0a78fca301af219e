from __future__ import annotations

import pytest
from pydantic import ValidationError

from mcp_server import tools as _tools  # noqa: F401
from mcp_server.registry import REGISTRY


def test_every_tool_is_documented_typed_and_annotated() -> None:
    assert len(REGISTRY) >= 18
    for td in REGISTRY.values():
        assert td.description, td.name
        assert td.output_model.model_json_schema()["type"] == "object", td.name
        assert not (td.read_only and td.destructive), td.name
        if td.destructive:
            assert any(p.name == "confirm" for p in td.params) or td.name == "revoke_api_key", td.name


def test_arguments_are_validated_strictly() -> None:
    deploy = REGISTRY["deploy_service"].args_model
    deploy.model_validate({"name": "web", "image": "img:1"})
    deploy.model_validate({"name": "web", "build_id": "b_1"})  # image xor build_id: checked by DeployRequest
    for bad in (
        {"name": "Web", "image": "i"},
        {"name": "web", "image": "i", "port": 0},
        {"name": "web", "image": "i", "surprise": 1},
    ):
        with pytest.raises(ValidationError):
            deploy.model_validate(bad)
