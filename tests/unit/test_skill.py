"""The Claude Code plugin in skills/ stays true to the live registry.

The skill and the commands write every tool call as `tool_name(arg=value, ...)` (`...` for arguments
left out). Each such call must name a registered tool and only arguments it takes; a bare `snake_case`
word in backticks must be a tool, an argument, a field of a tool's answer or of an error, an error code
or a prompt; the skill's error table must list exactly the error codes of orchestrator/errors.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mcp_server import tools as _tools  # noqa: F401  (fills the registry)
from mcp_server.registry import REGISTRY
from orchestrator.errors import AgentHostError

PLUGIN = Path(__file__).resolve().parents[2] / "skills"
SKILL = PLUGIN / "skills" / "agenthost" / "SKILL.md"
PROMPTS = {"deploy_app", "debug_service"}
ERROR_FIELDS = {"retry_after_s"}
SYNTAX = "tool_name"  # the skill's own example of the syntax

_CALL = re.compile(r"`([a-z][a-z_]*)\((.*?)\)`", re.S)
_WORD = re.compile(r"`([a-z]+(?:_[a-z]+)+)`")
_STRING = re.compile(r'"[^"]*"')
_NESTED = re.compile(r"\[[^\[\]]*\]|\{[^{}]*\}|<[^<>]*>")
_ARG = re.compile(r"^([a-z_]+)=\S")


def _pages() -> list[Path]:
    return [SKILL, *sorted((PLUGIN / "commands").glob("*.md"))]


def _codes() -> set[str]:
    found, todo = set(), [AgentHostError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return found


def _fields(schema: object) -> set[str]:
    """Every property name anywhere in a JSON schema."""
    found: set[str] = set()
    if isinstance(schema, dict):
        found |= set(schema.get("properties", {}))
        for value in schema.values():
            found |= _fields(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _fields(value)
    return found


def _arguments(inside: str) -> list[str]:
    """The argument parts of a call's text, with strings and nested lists, dicts and <placeholders> removed."""
    flat = _STRING.sub('"s"', inside)
    while _NESTED.search(flat):
        flat = _NESTED.sub("x", flat)
    return [part.strip() for part in flat.split(",") if part.strip()]


def test_the_plugin_has_its_manifest_its_skill_and_its_mcp_endpoint() -> None:
    manifest = json.loads((PLUGIN / ".claude-plugin" / "plugin.json").read_text())
    assert manifest["name"] == "agenthost"
    servers = json.loads((PLUGIN / ".mcp.json").read_text())["mcpServers"]
    assert servers["agenthost"]["type"] == "http" and servers["agenthost"]["url"].endswith("/mcp")
    assert "${AGENTHOST_API_KEY}" in servers["agenthost"]["headers"]["Authorization"]
    front = SKILL.read_text().split("---")[1]
    assert re.search(r"^name: agenthost$", front, re.M)
    assert "Use when" in re.search(r"^description: (.*)$", front, re.M).group(1)  # type: ignore[union-attr]
    assert list((PLUGIN / "commands").glob("*.md"))


def test_every_tool_call_in_the_skill_and_commands_exists_with_its_arguments() -> None:
    problems, calls = [], 0
    for page in _pages():
        where = page.relative_to(PLUGIN)
        for name, inside in _CALL.findall(page.read_text()):
            if name == SYNTAX:
                continue
            calls += 1
            td = REGISTRY.get(name)
            if td is None:
                problems.append(f"{where}: `{name}(...)` is no tool")
                continue
            takes = {p.name for p in td.params}
            for part in _arguments(inside):
                arg = _ARG.match(part)
                if part == "...":
                    continue
                if arg is None:
                    problems.append(f"{where}: `{name}({inside})`: write arguments as name=value, not {part!r}")
                elif arg.group(1) not in takes:
                    problems.append(f"{where}: `{name}` takes no argument {arg.group(1)!r}")
    assert not problems, "\n".join(problems)
    assert calls > 40  # the syntax is used, not avoided


def test_every_name_in_backticks_is_a_tool_an_argument_a_field_an_error_code_or_a_prompt() -> None:
    answers = set().union(*(_fields(td.output_model.model_json_schema()) for td in REGISTRY.values()))
    arguments = {p.name for td in REGISTRY.values() for p in td.params}
    known = set(REGISTRY) | arguments | answers | ERROR_FIELDS | _codes() | PROMPTS | {SYNTAX}
    problems = [
        f"{page.relative_to(PLUGIN)}: `{word}`"
        for page in _pages()
        for word in _WORD.findall(page.read_text())
        if word not in known
    ]
    assert not problems, "not a tool, argument, answer field, error code or prompt:\n" + "\n".join(problems)


def test_the_error_table_lists_every_error_code() -> None:
    table = re.findall(r"^\| `([a-z_]+)` \|", SKILL.read_text(), re.M)
    assert len(table) == len(set(table))
    assert set(table) == _codes()
