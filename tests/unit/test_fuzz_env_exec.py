"""Fuzzing what a tenant hands a container to run with: env vars (deploy_service, update_service, set_env)
and exec requests (argv or shell string, timeout, stdin, env, workdir).

An accepted env var has a name a shell and an env file can hold (letters, digits and '_', not starting
with a digit, no '=', NUL or newline) outside the platform's AGENTHOST_ prefix, and a NUL-free value of at
most 32 KiB (UTF-8). An accepted exec has a non-empty argv without NUL bytes, a deadline within the
platform's bounds, bounded stdin, env as above and an absolute, NUL-free workdir (the container's root
is the top of that path: '..' leads nowhere else).
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.exec import ExecRequest, _check
from orchestrator.services.requests import check_command, check_env, check_env_key
from orchestrator.settings import Settings

from .fuzzing import mutated, odd_chars, raw_text, repeated

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MAX_VALUE = 32 * 1024

env_keys = (
    mutated(st.from_regex(_KEY, fullmatch=True))
    | mutated(st.sampled_from(["PATH", "DATABASE_URL", "AGENTHOST_MASTER_KEY", "agenthost_x", "_", "A1"]))
    | raw_text
    | repeated(["A", "A_", "_"], ("", "=", "\n", "\x00", "-"))
)
env_values = (
    raw_text
    | mutated(st.sampled_from(["postgres://u:p@db/x", "", "a=b", "line1\nline2"]))
    | st.builds(lambda c, n: c * n, st.sampled_from(["a", "\xe9", "\U0001f600", "\x00"]), st.integers(8000, 33000))
)
env_maps = st.dictionaries(env_keys, env_values, max_size=4)


def assert_env_is_sound(env: dict[str, str]) -> None:
    for key, value in env.items():
        assert _KEY.fullmatch(key), f"accepted env var name {key!r}"
        assert not key.startswith("AGENTHOST_"), key
        assert "\x00" not in value, f"accepted a NUL byte in the value of {key}"
        assert len(value.encode()) <= _MAX_VALUE, f"accepted {len(value.encode())} bytes for {key}"


@given(env=env_maps)
@example(env={"A\n": ""})
@example(env={"PATH": "\x00"})
@example(env={"A": "\ud800"})
def test_accepted_service_env_has_sound_names_and_values(env: dict[str, str]) -> None:
    try:
        check_env(env)
    except InvalidInput:
        return
    assert_env_is_sound(env)


@given(key=env_keys)
@example(key="DATABASE_URL\n")
def test_an_accepted_link_env_var_name_is_sound(key: str) -> None:
    """link_database's env_var: the name a database's URL is injected under."""
    try:
        check_env_key(key)
    except InvalidInput:
        return
    assert_env_is_sound({key: ""})


# -- exec -----------------------------------------------------------------------------------------------

SETTINGS = Settings(exec_default_timeout_s=60.0, exec_max_timeout_s=600.0, exec_max_stdin_bytes=64)

commands = (
    st.lists(mutated(st.sampled_from(["ls", "-l", "/bin/sh", "echo hi"])) | raw_text, max_size=4)
    | mutated(st.sampled_from(["ls -l", "echo $HOME", " ", ""]))
    | raw_text
    | st.builds(lambda n: ["x" * n], st.integers(128 * 1024 - 2, 128 * 1024 + 2))
)
workdirs = st.none() | mutated(st.sampled_from(["/", "/app", "/a/../..", "app", "~"])) | st.text(odd_chars)
timeouts = st.none() | st.floats() | st.sampled_from([0.0, 1e-9, 600.0, 600.0001, 1e308])


def _exec(**fields: Any) -> tuple[ExecRequest, list[str], float, bytes | None]:
    req = ExecRequest.model_validate({"service": "web", "command": ["true"], **fields})
    return req, *_check(req, SETTINGS)


@given(env=env_maps)
@example(env={"A\n": ""})
@example(env={"PATH": "\xe9" * 16385})
@example(env={"A": "\udfff"})
def test_accepted_exec_env_has_sound_names_and_values(env: dict[str, str]) -> None:
    try:
        req, *_ = _exec(env=env)
    except (ValidationError, InvalidInput):
        return
    assert_env_is_sound(req.env)


@given(
    target=st.sampled_from([{"service": "web"}, {"sandbox": "box"}, {}, {"service": "web", "sandbox": "box"}]),
    command=commands,
    timeout_s=timeouts,
    stdin=st.none() | raw_text | st.builds(lambda n: "\xe9" * n, st.integers(30, 40)),
    env=env_maps,
    workdir=workdirs,
)
def test_an_accepted_exec_runs_a_sound_argv_within_bounds(
    target: dict[str, str], command: Any, timeout_s: Any, stdin: Any, env: Any, workdir: Any
) -> None:
    fields = {"service": None, **target}
    fields |= {"command": command, "timeout_s": timeout_s, "stdin": stdin, "env": env, "workdir": workdir}
    try:
        req, argv, timeout, data = _exec(**fields)
    except (ValidationError, InvalidInput):
        return
    assert (req.service is None) != (req.sandbox is None)
    assert argv and argv[0] and all("\x00" not in a for a in argv)
    assert sum(len(a) for a in argv) <= 128 * 1024
    assert 0 < timeout <= SETTINGS.exec_max_timeout_s
    assert data is None or len(data) <= SETTINGS.exec_max_stdin_bytes
    assert_env_is_sound(req.env)
    assert req.workdir is None or (req.workdir.startswith("/") and "\x00" not in req.workdir)


@given(st.one_of(st.none(), st.lists(st.text(max_size=64), max_size=8)))
@example(["sh", "-c", "echo\x00x"])
def test_an_accepted_service_command_is_a_sound_argv(command: list[str] | None) -> None:
    try:
        check_command(command)
    except InvalidInput:
        return
    assert command is None or (command and all("\x00" not in arg for arg in command))
