"""How a checked-out repository becomes an image: its own Dockerfile, or a recipe detected from its files.

In the spirit of Nixpacks, in this order:

- ``dockerfile``: the repository's Dockerfile (or the path the caller named);
- ``python``: ``requirements.txt`` or ``pyproject.toml``; dependencies go into a venv, the app starts
  from a Procfile ``web:`` line or ``app.py`` / ``main.py`` / ``server.py``;
- ``node``: ``package.json``; ``npm ci`` (with a lockfile) or ``npm install`` of production
  dependencies, started by ``scripts.start``, ``main`` or ``server.js`` / ``index.js`` / ``app.js``;
- ``static``: ``index.html`` (at the root or in ``public/``), served by a small HTTP server.

Generated images listen on port 8080 (``$PORT``) and run as the base images' unprivileged user.

``check_add_sources`` refuses an ``ADD`` (also as an ``ONBUILD`` trigger) the engine would download itself.
The classic builder (Docker 20.10, ``builder/dockerfile/copy.go``) downloads a source for which
``urlutil.IsURL`` holds, a plain prefix test for ``http://`` and ``https://``, from the daemon, in the
host's network namespace: outside every egress rule, so it reaches the host, its LAN and cloud metadata.
It tests the source after expanding it (ARG and ENV variables, quotes, the escape character), so a source
written with any of those is refused as well; so is any other ``scheme://`` and a ``git@`` remote, which
other builders (BuildKit) fetch.
Repository files are read only through ``_read``, which refuses symlinks that leave the checkout:
the control plane's own files must never reach a build log.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ..errors import BuildFailed
from ..images.dockerfile import add_sources
from ..settings import Settings

__all__ = ["GENERATED_PORT", "Plan", "RecipeName", "check_add_sources", "check_dockerfile_path", "plan_build"]

RecipeName = Literal["dockerfile", "python", "node", "static"]
GENERATED_PORT = 8080
_MAX_READ = 1024 * 1024
_OWNER = "10001:10001"
_BYTES = "surrogateescape"  # a Dockerfile is checked byte for byte as the engine will read it
_UNEVALUATED = set("$'\"\\`")
_ADD_HINT = (
    "write ADD sources plainly as paths in the repository, or use COPY; to fetch from the network, "
    "download in a RUN step, which runs under the egress rules"
)
_NO_RECIPE_HINT = (
    "add a Dockerfile, or make the app detectable: requirements.txt or pyproject.toml (Python), "
    "package.json (Node), or index.html (a static site)"
)


@dataclass(frozen=True)
class Plan:
    recipe: RecipeName
    detail: str = ""
    dockerfile: str = "Dockerfile"  # path inside the checkout (recipe 'dockerfile')
    generated: str | None = None  # the Dockerfile text of a detected recipe
    port: int | None = None
    text: str = ""  # the Dockerfile that will be built (the repository's, or the generated one)


def _inside(src: Path, rel: str) -> Path | None:
    """The regular file at ``rel`` inside ``src``, or None. Raises: BuildFailed for an escaping symlink."""
    path = src / rel
    if not path.is_symlink() and not path.exists():
        return None
    resolved = path.resolve()
    if resolved != src.resolve() and src.resolve() not in resolved.parents:
        raise BuildFailed(f"{rel} is a symlink that points outside the repository", "make it a regular file")
    return resolved if resolved.is_file() else None


def _read(src: Path, rel: str, errors: str = "replace") -> str | None:
    path = _inside(src, rel)
    if path is None:
        return None
    if path.stat().st_size > _MAX_READ:
        raise BuildFailed(f"{rel} is larger than 1 MiB", "is it really the file it claims to be?")
    # Bytes, not read_text: its universal newlines would turn a lone "\r" into a line break the builder never sees.
    return path.read_bytes().decode("utf-8", errors)


def _tail(port: int) -> list[str]:
    return [f"ENV PORT={port}", f"EXPOSE {port}"]


def _cmd(argv: list[str]) -> str:
    return f"CMD {json.dumps(argv)}"


def _procfile_web(src: Path) -> str | None:
    text = _read(src, "Procfile")
    for line in (text or "").splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == "web" and command.strip():
            return command.strip()
    return None


def _first_file(src: Path, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if _inside(src, n) is not None), None)


def _python(src: Path, settings: Settings) -> Plan | None:
    requirements = _read(src, "requirements.txt")
    pyproject = _read(src, "pyproject.toml")
    if requirements is None and pyproject is None:
        return None
    lines = [f"FROM {settings.build_base_python}", "WORKDIR /app", f"COPY --chown={_OWNER} . /app"]
    venv = "RUN python3 -m venv /app/.venv"
    if requirements is not None:
        source = "requirements.txt"
        wanted = [ln for ln in requirements.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        if wanted:
            lines.append(f"{venv} && /app/.venv/bin/pip install --no-cache-dir -r requirements.txt")
    else:
        source = "pyproject.toml"
        try:
            project: dict[str, Any] = tomllib.loads(pyproject or "").get("project", {})
        except tomllib.TOMLDecodeError as exc:
            raise BuildFailed(f"pyproject.toml does not parse: {exc}", "fix its TOML syntax") from exc
        wanted = [str(d) for d in project.get("dependencies", []) if isinstance(d, str)]
        if wanted:
            lines.append(venv)
            lines.append("RUN " + json.dumps(["/app/.venv/bin/pip", "install", "--no-cache-dir", *wanted]))
    if wanted:
        lines.append("ENV PATH=/app/.venv/bin:$PATH VIRTUAL_ENV=/app/.venv")
    lines.append("ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1")
    web = _procfile_web(src)
    script = None if web else _first_file(src, ("app.py", "main.py", "server.py"))
    if web:
        start, argv = f"Procfile: {web}", ["/bin/sh", "-c", f"exec {web}"]
    elif script:
        start, argv = f"python3 {script}", ["python3", script]
    else:
        raise BuildFailed(
            f"found a Python app ({source}) but no way to start it",
            "add a Procfile with a line 'web: <command>', or an app.py / main.py / server.py",
        )
    lines += [*_tail(GENERATED_PORT), _cmd(argv)]
    deps = f"{len(wanted)} dependencies" if wanted else "no dependencies"
    return Plan("python", f"{source} ({deps}); start: {start}", generated="\n".join(lines) + "\n", port=GENERATED_PORT)


def _node(src: Path, settings: Settings) -> Plan | None:
    text = _read(src, "package.json")
    if text is None:
        return None
    try:
        package = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BuildFailed(f"package.json does not parse: {exc}", "fix its JSON syntax") from exc
    if not isinstance(package, dict):
        raise BuildFailed("package.json is not a JSON object", "fix package.json")
    lines = [f"FROM {settings.build_base_node}", "WORKDIR /app", f"COPY --chown={_OWNER} . /app"]
    deps = package.get("dependencies") or {}
    if deps:
        lock = _first_file(src, ("package-lock.json", "npm-shrinkwrap.json"))
        verb = "ci" if lock else "install"
        lines.append(f"RUN npm {verb} --omit=dev --no-audit --no-fund")
    scripts: dict[str, Any] = package["scripts"] if isinstance(package.get("scripts"), dict) else {}
    start_script = str(scripts.get("start", "")).strip()
    main = package.get("main") if isinstance(package.get("main"), str) else None
    direct = re.fullmatch(r"node\s+([A-Za-z0-9_./-]+)", start_script)
    if direct:
        argv = ["node", direct.group(1)]
    elif start_script:
        argv = ["npm", "start"]
    elif main and _inside(src, main) is not None:
        argv = ["node", main]
    elif script := _first_file(src, ("server.js", "index.js", "app.js", "main.js")):
        argv = ["node", script]
    else:
        raise BuildFailed(
            "found a Node app (package.json) but no way to start it",
            "add scripts.start to package.json, or a server.js / index.js",
        )
    lines += [*_tail(GENERATED_PORT), _cmd(argv)]
    detail = f"package.json ({len(deps)} dependencies); start: {' '.join(argv)}"
    return Plan("node", detail, generated="\n".join(lines) + "\n", port=GENERATED_PORT)


def _static(src: Path, settings: Settings) -> Plan | None:
    folder = next((d for d in (".", "public") if _inside(src, f"{d}/index.html") is not None), None)
    if folder is None:
        return None
    lines = [
        f"FROM {settings.build_base_static}",
        f"COPY --chown={_OWNER} {folder} /srv/www",
        "WORKDIR /srv/www",
        *_tail(GENERATED_PORT),
        _cmd(["python3", "-m", "http.server", str(GENERATED_PORT), "--directory", "/srv/www"]),
    ]
    where = "index.html" if folder == "." else f"{folder}/index.html"
    return Plan("static", f"{where}; served on port {GENERATED_PORT}", generated="\n".join(lines) + "\n", port=8080)


def check_add_sources(text: str) -> None:
    """Refuse the Dockerfile ``text`` when an ADD would make the engine download something.

    Raises: BuildFailed.
    """
    for add in add_sources(text):
        source = add.source
        shown = source if len(source) <= 120 else source[:117] + "..."
        if "://" in source or source.strip().lower().startswith("git@"):
            raise BuildFailed(
                f"{add.where} of a URL is refused ({add.where} {shown!r}): the engine would download it itself, "
                "from the host's network, outside the build's egress rules",
                _ADD_HINT,
            )
        if _UNEVALUATED & set(source):
            raise BuildFailed(
                f"{add.where} with a variable, quotes or escapes in its source is refused ({add.where} {shown!r}): "
                "the engine expands them, and downloads the source itself when it becomes a URL",
                _ADD_HINT,
            )


def check_dockerfile_path(path: str) -> str:
    """Normalise a caller's Dockerfile path. Raises: BuildFailed when it leaves the repository."""
    pure = PurePosixPath(path)
    rel = str(pure)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or rel.startswith("-") or "\x00" in path:
        raise BuildFailed(
            f"dockerfile {path!r} must be a relative path inside the repository", "e.g. 'docker/Dockerfile'"
        )
    return rel


def plan_build(src: Path, dockerfile: str | None, settings: Settings) -> Plan:
    """Pick the recipe for the checkout at ``src``. Raises: BuildFailed when none applies."""
    if dockerfile is not None:
        rel = check_dockerfile_path(dockerfile)
        found = _inside(src, rel)
        if found is None:
            raise BuildFailed(f"no Dockerfile at {rel!r} in the repository", "check the path, or omit dockerfile")
        inside = str(found.relative_to(src.resolve()))
        return Plan("dockerfile", rel, dockerfile=inside, text=_read(src, inside, _BYTES) or "")
    found = _inside(src, "Dockerfile")
    if found is not None:
        inside = str(found.relative_to(src.resolve()))
        return Plan("dockerfile", "Dockerfile", dockerfile=inside, text=_read(src, inside, _BYTES) or "")
    for detect in (_python, _node, _static):
        plan = detect(src, settings)
        if plan is not None:
            return Plan(plan.recipe, plan.detail, generated=plan.generated, port=plan.port, text=plan.generated or "")
    raise BuildFailed(
        "no recipe detected: the repository has no Dockerfile and no app this platform knows", _NO_RECIPE_HINT
    )
