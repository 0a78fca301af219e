"""The rules of diagnose_service's likely_cause, over facts given directly."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.models import ServiceSpec
from orchestrator.services import Diagnosis
from orchestrator.services.diagnose import likely_cause

SPEC = ServiceSpec(image="agenthost/python:bookworm", port=8000, runtime="runsc", memory_mb=256, cpus=0.5)


def facts(**changes: Any) -> Diagnosis:
    base: dict[str, Any] = {
        "service": "web",
        "status": "running",
        "container": "running",
        "restarts": 0,
        "breaker_open": False,
        "image_present": True,
        "port": 8000,
        "port_answers": True,
        "log_tail": "",
        "hint": "",
    }
    return Diagnosis(**{**base, **{k: v for k, v in changes.items() if k != "desired_state"}})


def cause_of(**changes: Any) -> tuple[str | None, str]:
    return likely_cause(facts(**changes), SPEC, changes.get("desired_state", "running"))


CRASH = "exited with code 3 after 2 restarts; last log lines:\n<untrusted>\nboom\n</untrusted>"


@pytest.mark.parametrize(
    ("changes", "cause", "hint_has"),
    [
        ({}, None, "no problem found"),
        ({"image_present": False, "status": "failed"}, "image agenthost/python:bookworm is not on this host", "build"),
        ({"oom_killed": True, "status": "failed"}, "killed for running out of memory (memory_mb 256)", "memory_mb"),
        (
            {"status": "failed", "last_error": "killed: out of memory (raise memory_mb); last log lines:\nx"},
            "killed for running out of memory (memory_mb 256)",
            "memory_mb",
        ),
        (
            {"status": "failed", "container": "exited", "last_error": CRASH},
            "exited with code 3 after 2 restarts",
            "start_service",
        ),
        ({"status": "failed", "last_error": "exited with code 0"}, "exited with code 0", "foreground"),
        (
            {"breaker_open": True, "restarts": 5, "status": "stopped"},
            "circuit breaker open after 5 restarts",
            "start_service",
        ),
        (
            {"desired_state": "stopped", "status": "stopped", "container": "exited"},
            "stopped on request",
            "start_service",
        ),
        ({"container": "missing", "status": "deploying"}, "its container is gone", "reconciler"),
        (
            {"container": "running", "restarts": 3, "exit_code": 1},
            "crash loop: 3 restarts, last exit code 1",
            "log_tail",
        ),
        (
            {"port_answers": False, "status": "deploying"},
            "the container runs but port 8000 does not answer",
            "0.0.0.0:8000",
        ),
        ({"status": "deploying", "container": "pending", "port_answers": None}, "still starting", "get_service"),
    ],
)
def test_likely_cause(changes: dict[str, Any], cause: str | None, hint_has: str) -> None:
    got, hint = cause_of(**changes)
    assert got == cause
    assert hint_has in hint


def test_the_cause_never_quotes_the_workloads_log() -> None:
    cause, _ = cause_of(status="failed", last_error=CRASH)
    assert cause is not None and "boom" not in cause and "untrusted" not in cause
