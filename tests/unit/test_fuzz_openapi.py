"""schemathesis over /openapi.json: requests generated from the published schema, the valid ones
(positive) and ones that break it (negative), sent with a member's or an admin's key through the REST API
of a platform over the in-memory engines. Whatever a caller sends, the answer is JSON, an error carries
its code and message, and nothing is a 500 (a crash). The number of examples follows the hypothesis profile
(tests/unit/conftest.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from .site import Site


def _send(site: Site, case: Any, key: str) -> httpx.Response:
    """The generated request with one of the site's keys: a made-up bearer token only ever meets the auth
    check, which its own tests cover."""
    sent = case.as_transport_kwargs(base_url=str(site.client.base_url))
    headers = {k: v for k, v in (sent.get("headers") or {}).items() if k.lower() != "authorization"}
    headers["authorization"] = f"Bearer {key}"
    body: dict[str, Any] = {"json": sent["json"]} if "json" in sent else {"content": sent.get("data")}
    return site.client.request(sent["method"], sent["url"], headers=headers, params=sent.get("params"), **body)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_request_the_schema_describes_or_breaks_crashes_the_server(site: Site, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_dict(site.client.get("/openapi.json").json())
    paths: set[str] = set()

    @settings(deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(generation_mode=mode), key=st.sampled_from([site.key, site.admin]))
    def probe(case: Any, key: str) -> None:
        response = _send(site, case, key)
        where = f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
        paths.add(case.formatted_path)
        assert response.status_code < 500, where
        body = response.json()
        assert isinstance(body, dict), where
        if response.status_code >= 400:
            assert {"code", "message"} <= set(body["error"]), where

    probe()
    assert len(paths) > 20, paths  # the strategy reached the tools, not a few paths over and over
