"""Recipe detection and the Dockerfiles it generates; the guard against other tenants' images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.builds_recipes import check_base_images, plan_build
from orchestrator.errors import BuildFailed
from orchestrator.settings import Settings

SETTINGS = Settings(build_base_python="py:base", build_base_node="node:base", build_base_static="static:base")


def repo(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    return tmp_path


def test_dockerfile_wins_over_detection(tmp_path: Path) -> None:
    plan = plan_build(repo(tmp_path, {"Dockerfile": "FROM x\n", "requirements.txt": ""}), None, SETTINGS)
    assert (plan.recipe, plan.dockerfile, plan.generated, plan.text) == ("dockerfile", "Dockerfile", None, "FROM x\n")


def test_named_dockerfile(tmp_path: Path) -> None:
    plan = plan_build(repo(tmp_path, {"docker/App.Dockerfile": "FROM y\n"}), "docker/App.Dockerfile", SETTINGS)
    assert plan.dockerfile == "docker/App.Dockerfile"
    with pytest.raises(BuildFailed, match="no Dockerfile at 'missing'"):
        plan_build(tmp_path, "missing", SETTINGS)
    for bad in ("../x", "/etc/passwd", "-f"):
        with pytest.raises(BuildFailed, match="relative path"):
            plan_build(tmp_path, bad, SETTINGS)


def test_a_dockerfile_symlink_out_of_the_repo_is_refused(tmp_path: Path) -> None:
    src = repo(tmp_path / "src", {"app.py": ""})
    os.symlink("/etc/hostname", src / "Dockerfile")
    with pytest.raises(BuildFailed, match="outside the repository"):
        plan_build(src, None, SETTINGS)


def test_a_symlinked_requirements_file_cannot_read_host_files(tmp_path: Path) -> None:
    src = repo(tmp_path / "src", {"app.py": ""})
    os.symlink("/etc/passwd", src / "requirements.txt")
    with pytest.raises(BuildFailed, match="outside the repository"):
        plan_build(src, None, SETTINGS)


def test_python_without_dependencies(tmp_path: Path) -> None:
    plan = plan_build(repo(tmp_path, {"requirements.txt": "# none\n\n", "app.py": ""}), None, SETTINGS)
    assert plan.recipe == "python" and plan.port == 8080
    assert plan.generated is not None
    assert plan.generated.startswith("FROM py:base\n")
    assert "pip install" not in plan.generated
    assert 'CMD ["python3", "app.py"]' in plan.generated
    assert "EXPOSE 8080" in plan.generated
    assert plan.detail == "requirements.txt (no dependencies); start: python3 app.py"


def test_python_with_requirements_and_procfile(tmp_path: Path) -> None:
    files = {"requirements.txt": "flask==3.0\n", "Procfile": "release: x\nweb: gunicorn -b 0.0.0.0:$PORT app:app\n"}
    plan = plan_build(repo(tmp_path, files), None, SETTINGS)
    assert plan.generated is not None
    assert "/app/.venv/bin/pip install --no-cache-dir -r requirements.txt" in plan.generated
    assert "ENV PATH=/app/.venv/bin:$PATH" in plan.generated
    assert json.dumps(["/bin/sh", "-c", "exec gunicorn -b 0.0.0.0:$PORT app:app"]) in plan.generated


def test_pyproject_dependencies_are_installed_in_exec_form(tmp_path: Path) -> None:
    pyproject = '[project]\nname = "x"\ndependencies = ["requests>=2", "rich; python_version > \'3\'"]\n'
    plan = plan_build(repo(tmp_path, {"pyproject.toml": pyproject, "main.py": ""}), None, SETTINGS)
    assert plan.generated is not None
    assert 'RUN ["/app/.venv/bin/pip", "install", "--no-cache-dir", "requests>=2", ' in plan.generated
    assert 'CMD ["python3", "main.py"]' in plan.generated


def test_python_without_a_start_command_says_how_to_add_one(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed) as err:
        plan_build(repo(tmp_path, {"requirements.txt": ""}), None, SETTINGS)
    assert "Procfile" in (err.value.hint or "")


def test_broken_pyproject_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="pyproject.toml does not parse"):
        plan_build(repo(tmp_path, {"pyproject.toml": "[project\n"}), None, SETTINGS)


@pytest.mark.parametrize(
    ("package", "files", "cmd"),
    [
        ({"scripts": {"start": "node server.js"}}, {}, ["node", "server.js"]),
        ({"scripts": {"start": "next start"}}, {}, ["npm", "start"]),
        ({"main": "lib/main.js"}, {"lib/main.js": ""}, ["node", "lib/main.js"]),
        ({}, {"index.js": ""}, ["node", "index.js"]),
    ],
)
def test_node_start_commands(tmp_path: Path, package: dict[str, object], files: dict[str, str], cmd: list[str]) -> None:
    plan = plan_build(repo(tmp_path, {"package.json": json.dumps(package), **files}), None, SETTINGS)
    assert plan.recipe == "node"
    assert plan.generated is not None
    assert f"CMD {json.dumps(cmd)}" in plan.generated
    assert "npm " not in plan.generated.split("CMD")[0]  # no dependencies: nothing to install


def test_node_dependencies_use_ci_with_a_lockfile(tmp_path: Path) -> None:
    package = json.dumps({"dependencies": {"express": "^4"}, "scripts": {"start": "node app.js"}})
    plan = plan_build(repo(tmp_path / "a", {"package.json": package, "package-lock.json": "{}"}), None, SETTINGS)
    assert plan.generated is not None and "RUN npm ci --omit=dev" in plan.generated
    plan = plan_build(repo(tmp_path / "b", {"package.json": package}), None, SETTINGS)
    assert plan.generated is not None and "RUN npm install --omit=dev" in plan.generated


def test_node_without_start_and_broken_json(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="no way to start it"):
        plan_build(repo(tmp_path / "a", {"package.json": "{}"}), None, SETTINGS)
    with pytest.raises(BuildFailed, match="does not parse"):
        plan_build(repo(tmp_path / "b", {"package.json": "{"}), None, SETTINGS)


def test_static_site_at_root_or_public(tmp_path: Path) -> None:
    plan = plan_build(repo(tmp_path / "a", {"index.html": "<h1>x</h1>"}), None, SETTINGS)
    assert plan.recipe == "static" and plan.generated is not None
    assert "FROM static:base" in plan.generated and "COPY --chown=10001:10001 . /srv/www" in plan.generated
    plan = plan_build(repo(tmp_path / "b", {"public/index.html": "x", "README": ""}), None, SETTINGS)
    assert plan.generated is not None and "COPY --chown=10001:10001 public /srv/www" in plan.generated


def test_detection_order_python_then_node_then_static(tmp_path: Path) -> None:
    files = {"requirements.txt": "", "app.py": "", "package.json": '{"main": "x.js"}', "index.html": ""}
    assert plan_build(repo(tmp_path / "a", files), None, SETTINGS).recipe == "python"
    files = {"package.json": '{"scripts": {"start": "node x.js"}}', "index.html": ""}
    assert plan_build(repo(tmp_path / "b", files), None, SETTINGS).recipe == "node"


def test_nothing_detectable(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="no recipe detected") as err:
        plan_build(repo(tmp_path, {"README.md": "hi"}), None, SETTINGS)
    assert "requirements.txt" in (err.value.hint or "")


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM 127.0.0.1:5000/t_other/app:b_1\n",
        "FROM localhost:5000/t_other/app:b_1\n",
        "FROM --platform=linux/amd64 ah-build/t_other/app:b_1 AS x\n",
        "FROM agenthost/base:bookworm\nCOPY --from=127.0.0.1:5000/t_other/app:b_1 /x /x\n",
        "ARG BASE=127.0.0.1:5000/t_other/app:b_1\nFROM ${BASE}\n",
        "ARG B=127.0.0.1:5000/t_other\nFROM $B/app\n",
        "FROM \\\n  127.0.0.1:5000/t_other/app\n",
        "FROM 13ec7d127fea\n",
        "FROM sha256:13ec7d127fea8821ec18c5cbd8ef99c2e435a6b6850ca5195cf3f761ca99916e\n",
    ],
)
def test_other_tenants_images_are_refused(dockerfile: str) -> None:
    with pytest.raises(BuildFailed):
        check_base_images(dockerfile, "t_me", "127.0.0.1:5000")


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM agenthost/python:bookworm\n",
        "FROM 127.0.0.1:5000/t_me/app:b_1 AS build\nFROM agenthost/base:bookworm\nCOPY --from=build /a /a\n",
        "FROM ah-build/t_me/app:b_2\n",
        "FROM debian:bookworm\n# FROM 127.0.0.1:5000/t_other/app\n",
        "FROM scratch\n",
    ],
)
def test_own_platform_and_public_images_pass(dockerfile: str) -> None:
    check_base_images(dockerfile, "t_me", "127.0.0.1:5000")
