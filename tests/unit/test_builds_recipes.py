"""Recipe detection and the Dockerfiles it generates; the images a Dockerfile names; ADD sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.builds.recipes import check_add_sources, plan_build
from orchestrator.errors import BuildFailed
from orchestrator.images.dockerfile import add_sources, image_uses
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


# -- the images a Dockerfile names, read as the engine's builder reads it ---------------------------------


def _refs(text: str) -> list[str]:
    return [u.ref for u in image_uses(text)]


@pytest.mark.parametrize(
    ("dockerfile", "refs"),
    [
        ("FROM a:1\nRUN x\n", ["a:1"]),
        ("FROM --platform=linux/amd64 a:1 AS build\nFROM b:1\nCOPY --from=build /x /x\n", ["a:1", "b:1"]),
        ("FROM a:1 AS one\nFROM one\nFROM scratch\n", ["a:1"]),  # an earlier stage, and no image at all
        ("FROM a:1\nFROM b:1\nCOPY --from=0 / /\nCOPY --from=+0 / /\n", ["a:1", "b:1"]),
        # The stage being built is not one it can copy from: the engine takes these for images (ids!).
        ("FROM a:1 AS f77\nCOPY --from=f77 / /\n", ["a:1", "f77"]),
        ("FROM a:1\nCOPY --from=1 / /\n", ["a:1", "1"]),
        ("FROM a:1\nCOPY --from=B:1 / /\nADD --from=c:2 / /\n", ["a:1", "B:1", "c:2"]),
        ("FROM a:1\nCOPY --chown=1 --from=b:1 --chmod=7 / /\n", ["a:1", "b:1"]),
        ("FROM \\\n  b:1\n", ["b:1"]),
        ("\ufeffFROM\tb:1\r\n", ["b:1"]),
        ("# FROM not:me\nFROM a:1\n   # FROM nor:me\n", ["a:1"]),
        # Comment and empty lines inside a continuation are skipped: the FROM is a word of the RUN.
        ("FROM a:1\nRUN echo \\\n# c\n\nFROM b:1\n", ["a:1"]),
        # Flags are tokenised like the engine does it: quotes, escapes, and bytes 0x85/0xa0 as spaces.
        ('FROM a:1\nCOPY --fr"om"=b:1 / /\n', ["a:1", "b:1"]),
        ("FROM a:1\nCOPY --f\\rom=b:1 / /\n", ["a:1", "b:1"]),
        ("FROM a:1\nCOPY --chown=1\u00c5--from=b:1 / /\n", ["a:1", "b:1"]),  # U+00C5 is C3 85
        ("FROM a:1\nCOPY --chown=1\udc85--from=b:1 / /\n", ["a:1", "b:1"]),  # a lone 0x85 byte
        ("FROM a:1\nCOPY -- --from=b:1 / /\n", ["a:1"]),  # after "--" it is a source path
        ("FROM a:1\nRUN --mount=type=bind,from=b:1,target=/x true\n", ["a:1", "b:1"]),
        ("FROM a:1\nONBUILD COPY --from=b:1 / /\nONBUILD COPY --from=0 / /\n", ["a:1", "b:1", "0"]),
        # escape=` makes the backslash a plain character: read both ways, every image counts.
        ("# escape=`\nFROM a:1\nRUN echo \\\nFROM b:1\n", ["a:1", "b:1"]),
        ("# syntax=x\n#ESCAPE = `\nFROM a:1\nRUN echo `\nFROM b:1\n", ["a:1", "b:1"]),
        ("ARG X=a:1\nFROM ${X}\nFROM $X\n", ["${X}", "$X"]),
    ],
)
def test_image_uses(dockerfile: str, refs: list[str]) -> None:
    assert _refs(dockerfile) == refs


def test_dockerfile_is_read_byte_for_byte(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_bytes(b"FROM a:1\nCOPY --chown=1\x85--from=b:1 / /\n")
    plan = plan_build(tmp_path, None, SETTINGS)
    assert _refs(plan.text) == ["a:1", "b:1"]


def test_carriage_returns_reach_the_reader_as_the_builder_sees_them(tmp_path: Path) -> None:
    # Universal newlines would turn "\r\r\n" into two line breaks and join the FROM into the LABEL.
    (tmp_path / "Dockerfile").write_bytes(b"FROM a:1\nLABEL x=\\\r\r\nFROM b:1\n")
    plan = plan_build(tmp_path, None, SETTINGS)
    assert "\r\r" in plan.text
    assert "b:1" in _refs(plan.text)


# -- ADD sources: what the engine would download itself, from the host's network ---------------------------


@pytest.mark.parametrize(
    ("dockerfile", "sources"),
    [
        ("FROM a:1\nADD x.tar.gz /srv/\n", [("ADD", "x.tar.gz")]),
        ("FROM a:1\nADD a b /dest/\nCOPY c /c\n", [("ADD", "a"), ("ADD", "b")]),
        ("FROM a:1\nadd --chown=1:1 http://h/x /x\n", [("ADD", "http://h/x")]),
        ('FROM a:1\nADD ["http://h/j", "/j"]\n', [("ADD", "http://h/j")]),
        # The builder's JSON reader takes the first value and ignores what follows; escapes are decoded.
        ('FROM a:1\nADD --chown=1 ["\\u0068ttp://h/u", "/u"] junk\n', [("ADD", "http://h/u")]),
        # Not a JSON array of strings: split on blanks, quotes and all.
        ('FROM a:1\nADD [1, "http://h/n"] /n\n', [("ADD", "[1,"), ("ADD", '"http://h/n"]')]),
        ("FROM a:1\nADD \\\n  http://h/c \\\n# a comment\n\n  /c\n", [("ADD", "http://h/c")]),
        ("FROM a:1\nADD http://h\\\n/split /s\n", [("ADD", "http://h/split")]),
        ("FROM a:1\nONBUILD ADD --chown=1 http://h/o /o\n", [("ONBUILD ADD", "http://h/o")]),
        ("FROM a:1\nonbuild  add ${U} /o\n", [("ONBUILD ADD", "${U}")]),
        ("# ADD http://h/comment /c\nFROM a:1\nRUN curl http://h/run\n", []),
        # escape=` makes ` the continuation: read both ways, every source counts.
        ("# escape=`\nFROM a:1\nADD http://h/`\nb /b\n", [("ADD", "http://h/`"), ("ADD", "http://h/b")]),
    ],
)
def test_add_sources(dockerfile: str, sources: list[tuple[str, str]]) -> None:
    assert [(a.where, a.source) for a in add_sources(dockerfile)] == sources


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM a:1\nADD http://127.0.0.1:5000/v2/_catalog /c\n",
        "FROM a:1\nADD https://169.254.169.254/latest/meta-data/ /m\n",
        "FROM a:1\nADD HTTP://h/x /x\n",
        "FROM a:1\nADD ftp://h/x /x\n",
        "FROM a:1\nADD git@h:org/repo.git /r\n",
        "FROM a:1\nADD local.txt http://h/second /d/\n",
        "FROM a:1\nADD --chown=65534:65534 http://h/x /x\n",
        'FROM a:1\nADD ["http://h/x", "/x"]\n',
        'FROM a:1\nADD [" http://h/x", "/x"]\n',
        "FROM a:1\nONBUILD ADD http://h/x /x\n",
    ],
)
def test_add_of_a_url_is_refused(dockerfile: str) -> None:
    with pytest.raises(BuildFailed, match="of a URL is refused") as err:
        check_add_sources(dockerfile)
    assert "download in a RUN step" in (err.value.hint or "")


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM a:1\nARG U=http://h/x\nADD $U /x\n",
        "ARG U=http://h/x\nFROM a:1\nARG U\nADD ${U} /x\n",
        'FROM a:1\nENV U=http://h/x\nADD ["$U", "/x"]\n',
        'FROM a:1\nADD "http:"//h/x /x\n',
        "FROM a:1\nADD 'h'ttp:/\\/h/x /x\n",
        "FROM a:1\nADD h\\ttp:/\\/h/x /x\n",
        "# escape=`\nFROM a:1\nADD h`ttp:/`/h/x /x\n",
        "FROM a:1\nONBUILD ADD $U /x\n",
    ],
)
def test_add_of_an_expanded_source_is_refused(dockerfile: str) -> None:
    with pytest.raises(BuildFailed, match="variable, quotes or escapes in its source is refused"):
        check_add_sources(dockerfile)


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM a:1\nADD app.tar.gz /srv/\n",
        "FROM a:1\nADD --chown=10001:10001 src/ /app/\n",
        'FROM a:1\nADD ["a file", "/x"]\n',
        "FROM a:1\nARG DEST=/srv\nADD app.tar.gz $DEST/\n",  # the destination is not fetched
        "FROM a:1\nCOPY http://h/x /x\n",  # the engine refuses a URL in COPY itself
        "FROM a:1\nRUN curl -o /x http://h/x\n",
    ],
)
def test_plain_add_sources_pass(dockerfile: str) -> None:
    check_add_sources(dockerfile)
