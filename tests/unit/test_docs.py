"""The documentation stays true to the code: every setting and every error code has its row, every path a page
names exists, and no page links outside the repository."""

from __future__ import annotations

import os
import re
from pathlib import Path

import mcp_server.app  # noqa: F401  (imports every module that may define an error class)
from orchestrator.errors import AgentHostError
from orchestrator.settings import Quotas, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_SKIP_DIRS = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
# Markdown links and images: [text](target) / ![alt](target), the target up to a space or ')'.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# Backticked repository paths, e.g. `orchestrator/services/manager.py` or `tests/e2e/`.
_TOP = ("orchestrator", "mcp_server", "tests", "infra", "nomad", "bench", "skills", "docs", ".ci")
_PATH = re.compile(r"`((?:" + "|".join(re.escape(t) for t in _TOP) + r")/[^`\s]*)`")
_ENV = re.compile(r"\bAGENTHOST_[A-Z0-9_]*[A-Z0-9]\b")
# AGENTHOST_* variables read by the scripts, the CLI or the test suite rather than by Settings.
NOT_SETTINGS = {
    "AGENTHOST_API_KEY",  # `agenthost mcp`: the stdio session's key; skills/.mcp.json: the plugin's key
    "AGENTHOST_URL",  # skills/.mcp.json: where the plugin finds the server
    "AGENTHOST_HOST",  # infra/run.sh
    "AGENTHOST_PORT",  # infra/run.sh
    "AGENTHOST_EXTRA_APT",  # infra/setup.sh
    "AGENTHOST_CACHE_DIR",  # infra/nomad.sh
    "AGENTHOST_NOMAD_DEV_DIR",  # infra/nomad.sh
    "AGENTHOST_REQUIRE_E2E",  # tests/conftest.py
}


def _repo_files(*suffixes: str) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        found += [Path(folder) / f for f in files if f.endswith(suffixes)]
    return sorted(found)


def _markdown_files() -> list[Path]:
    return _repo_files(".md")


def _anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def _setting_names() -> set[str]:
    return {f"AGENTHOST_{name.upper()}" for name in Settings.model_fields}


def _error_classes() -> list[type[AgentHostError]]:
    found: list[type[AgentHostError]] = []
    todo: list[type[AgentHostError]] = [AgentHostError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_markdown_links_stay_inside_the_repository_and_resolve() -> None:
    problems = []
    for page in _markdown_files():
        text = page.read_text()
        where = page.relative_to(ROOT)
        if "../shared" in text or "DESIGN.md" in text:
            problems.append(f"{where}: names the design file outside the repository")
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # a URL (http:, mailto:)
            if target.startswith("#"):
                if target[1:] not in _anchors(page):
                    problems.append(f"{where}: {target} names no heading of this page")
                continue
            path_part = target.split("#", 1)[0]
            if path_part.startswith("/"):
                problems.append(f"{where}: {target} is an absolute path, outside the repository")
                continue
            resolved = (page.parent / path_part).resolve()
            if not resolved.is_relative_to(ROOT):
                problems.append(f"{where}: {target} leaves the repository")
            elif not resolved.exists():
                problems.append(f"{where}: {target} does not exist")
            elif "#" in target and resolved.suffix == ".md":
                anchor = target.split("#", 1)[1]
                if anchor not in _anchors(resolved):
                    problems.append(f"{where}: {target} names no heading of {resolved.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def test_no_source_file_cites_a_design_file_outside_the_repository() -> None:
    problems = []
    for path in _repo_files(".py", ".sh", ".hcl", ".toml"):
        if path == Path(__file__).resolve():
            continue
        rel = path.relative_to(ROOT)
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if "DESIGN.md" in line or "../shared" in line:
                problems.append(f"{rel}:{n}: {line.strip()}")
    assert not problems, "cite docs/ instead:\n" + "\n".join(problems)


def test_paths_named_in_the_docs_exist() -> None:
    problems = []
    for page in _markdown_files():
        for name in _PATH.findall(page.read_text()):
            if any(c in name for c in "*<>{}$"):
                continue  # a pattern or a placeholder, not one file
            target = name.split("::", 1)[0].rstrip(".,;:")
            if not (ROOT / target).exists():
                problems.append(f"{page.relative_to(ROOT)}: `{name}` does not exist")
    assert not problems, "\n".join(problems)


def test_every_setting_is_documented_in_operations() -> None:
    text = (DOCS / "operations.md").read_text()
    missing = sorted(name for name in _setting_names() if f"`{name}`" not in text)
    assert not missing, f"docs/operations.md has no row for: {', '.join(missing)}"
    quotas = sorted(name for name in Quotas.model_fields if f"`{name}`" not in text)
    assert not quotas, f"docs/operations.md does not describe these quotas: {', '.join(quotas)}"


def test_docs_name_only_settings_that_exist() -> None:
    known = _setting_names() | NOT_SETTINGS
    problems = [
        f"{page.relative_to(ROOT)}: {name} is no setting (orchestrator/settings.py)"
        for page in _markdown_files()
        for name in sorted(set(_ENV.findall(page.read_text())) - known)
    ]
    assert not problems, "\n".join(problems)


def test_every_error_code_has_a_row_in_errors_md() -> None:
    rows = {}
    for line in (DOCS / "errors.md").read_text().splitlines():
        match = re.match(r"^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|", line)
        if match:
            rows[match.group(1)] = int(match.group(2))
    problems = []
    for cls in _error_classes():
        if cls.code not in rows:
            problems.append(f"{cls.code} ({cls.__module__}.{cls.__name__}) has no row")
        elif rows[cls.code] != cls.status:
            problems.append(f"{cls.code}: the row says {rows[cls.code]}, the code {cls.status}")
    codes = {cls.code for cls in _error_classes()}
    problems += [f"{code} has a row but no error class" for code in sorted(set(rows) - codes)]
    assert not problems, "docs/errors.md:\n" + "\n".join(problems)
