"""Deterministic baseline SUT of ``migration-chainguard-distroless`` (no model, offline).

Run as ``python -I baseline_sut.py WORKSPACE`` (cwd = WORKSPACE). It reads
``WORKSPACE/Dockerfile``, detects the language (Python, Node.js or Go) from the base image
and the files present, and rewrites the Dockerfile into the documented Chainguard
multi-stage shape: a build stage on a ``-dev``/toolchain image, a distroless runtime stage
fed by ``COPY --from=<stage>``, and an exec-form ``ENTRYPOINT``. It keeps the original
working directory, the application files the original copied and its exposed ports.

Exit codes: 0 rewritten, 2 usage error / no Dockerfile, 3 language not recognised (the
Dockerfile is left untouched). Stdlib and ``dockerfile_parse`` only.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

PYTHON_DEV = "cgr.dev/chainguard/python:latest-dev"
PYTHON_RUNTIME = "cgr.dev/chainguard/python:latest"
NODE_DEV = "cgr.dev/chainguard/node:latest-dev"
NODE_RUNTIME = "cgr.dev/chainguard/node:latest"
GO_BUILD = "cgr.dev/chainguard/go:latest"
GO_STATIC = "cgr.dev/chainguard/static:latest"
GO_DYNAMIC = "cgr.dev/chainguard/glibc-dynamic:latest"

HEADER = "# Rewritten by the migration-chainguard-distroless baseline SUT (rule-based).\n"
MANIFESTS = frozenset(
    {
        "requirements.txt",
        "package.json",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "go.mod",
        "go.sum",
    }
)


@dataclass
class CopyLine:
    """A build-context COPY/ADD of the original Dockerfile."""

    sources: list[str]
    dest: str


@dataclass
class Original:
    """What the baseline keeps from the original Dockerfile."""

    base_images: list[str] = field(default_factory=list)
    workdir: str | None = None
    copies: list[CopyLine] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    cmd: str | None = None


def _split_copy(value: str) -> tuple[dict[str, str], list[str]]:
    tokens = value.split()
    flags: dict[str, str] = {}
    while tokens and tokens[0].startswith("--"):
        key, _, val = tokens.pop(0)[2:].partition("=")
        flags[key] = val
    rest = " ".join(tokens)
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return flags, parsed
    return flags, tokens


def read_original(text: str) -> Original:
    """Collect base images, WORKDIR, context copies, ports, ENV, RUNs and the start command."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")), env_replace=False)
    orig = Original()
    for item in parser.structure:
        instruction = str(item["instruction"]).upper()
        value = str(item["value"]).strip()
        if instruction == "FROM":
            tokens = [t for t in value.split() if not t.startswith("--")]
            if tokens:
                orig.base_images.append(tokens[0])
        elif instruction == "WORKDIR":
            if orig.workdir is None or value.startswith("/"):
                orig.workdir = value
            else:
                orig.workdir = posixpath.join(orig.workdir, value)
        elif instruction in ("COPY", "ADD"):
            flags, paths = _split_copy(value)
            if "from" not in flags and len(paths) >= 2:
                orig.copies.append(CopyLine(paths[:-1], paths[-1]))
        elif instruction == "EXPOSE":
            orig.expose.extend(value.split())
        elif instruction == "ENV":
            orig.env.append(value)
        elif instruction == "RUN":
            orig.runs.append(value)
        elif instruction == "ENTRYPOINT":
            orig.entrypoint = value
        elif instruction == "CMD":
            orig.cmd = value
    return orig


def _argv(value: str | None) -> list[str]:
    """A Dockerfile command value (exec or shell form) as an argv list."""
    if value is None:
        return []
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            parsed: Any = json.loads(stripped)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return list(parsed)
    try:
        return shlex.split(stripped)
    except ValueError:
        return stripped.split()


def start_argv(orig: Original) -> list[str]:
    """The original start command (ENTRYPOINT + CMD) as one argv."""
    entry = _argv(orig.entrypoint)
    cmd = _argv(orig.cmd)
    if entry and entry[0] in ("sh", "/bin/sh", "bash", "/bin/bash") and "-c" in entry:
        entry = []
    if cmd[:2] in (["sh", "-c"], ["/bin/sh", "-c"]) and len(cmd) > 2:
        cmd = _argv(cmd[2])
    return entry + cmd


def detect_language(orig: Original, workspace: Path) -> str | None:
    """``python``, ``node`` or ``go`` from the base images first, then the files present."""
    for image in orig.base_images:
        name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0].lower()
        if name.startswith(("python", "pypy")):
            return "python"
        if name.startswith("node"):
            return "node"
        if name.startswith(("golang", "go")):
            return "go"
    if (workspace / "go.mod").is_file():
        return "go"
    if (workspace / "package.json").is_file():
        return "node"
    if (workspace / "requirements.txt").is_file() or any(workspace.glob("*.py")):
        return "python"
    return None


def _app_copies(orig: Original) -> list[CopyLine]:
    """Context copies other than the dependency manifests handled by the build stage."""
    kept: list[CopyLine] = []
    for line in orig.copies:
        sources = [s for s in line.sources if posixpath.basename(s) not in MANIFESTS]
        if sources:
            kept.append(CopyLine(sources, line.dest))
    return kept


def _copy_line(line: CopyLine, chown: str | None = None) -> str:
    flag = f"--chown={chown} " if chown else ""
    if any(" " in p for p in [*line.sources, line.dest]):
        return f"COPY {flag}{json.dumps([*line.sources, line.dest])}\n"
    return f"COPY {flag}{' '.join(line.sources)} {line.dest}\n"


def _tail(orig: Original, argv: list[str]) -> str:
    ports = "".join(f"EXPOSE {port}\n" for port in orig.expose)
    return f"{ports}ENTRYPOINT {json.dumps(argv)}\n"


def _env_lines(orig: Original, skip: tuple[str, ...] = ()) -> str:
    return "".join(f"ENV {env}\n" for env in orig.env if not env.startswith(skip))


def rewrite_python(orig: Original, workspace: Path) -> str:
    """pip + venv in a ``python:latest-dev`` builder, ``python:latest`` runtime."""
    workdir = orig.workdir or "/app"
    argv = start_argv(orig)
    if not argv:
        scripts = sorted(p.name for p in workspace.glob("*.py"))
        argv = ["python", "app.py" if "app.py" in scripts else (scripts or ["main.py"])[0]]
    elif re.fullmatch(r"python[0-9.]*", posixpath.basename(argv[0])):
        argv = ["python", *argv[1:]]
    # any other program (gunicorn, uvicorn, ...) is found on the venv's PATH as it is
    has_reqs = (workspace / "requirements.txt").is_file()
    venv = posixpath.join(workdir, "venv")
    out = [HEADER]
    if has_reqs:
        out.append(
            f"FROM {PYTHON_DEV} AS builder\n"
            f"WORKDIR {workdir}\n"
            f"RUN python -m venv {venv}\n"
            f'ENV PATH="{venv}/bin:$PATH"\n'
            "COPY requirements.txt .\n"
            "RUN pip install --no-cache-dir -r requirements.txt\n\n"
        )
    out.append(f"FROM {PYTHON_RUNTIME}\nWORKDIR {workdir}\n")
    out.append(_env_lines(orig, skip=("PATH=", "PATH ")))
    if has_reqs:
        out.append(f'ENV PATH="{venv}/bin:$PATH"\n')
        out.append(f"COPY --from=builder {venv} {venv}\n")
    out.extend(_copy_line(line) for line in _app_copies(orig))
    out.append(_tail(orig, argv))
    return "".join(out)


def _node_entry(orig: Original, workspace: Path) -> list[str]:
    argv = start_argv(orig)
    package: dict[str, Any] = {}
    manifest = workspace / "package.json"
    if manifest.is_file():
        try:
            loaded = json.loads(manifest.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            loaded = {}
        package = loaded if isinstance(loaded, dict) else {}
    if argv and posixpath.basename(argv[0]) in ("npm", "yarn", "pnpm"):
        args = [a for a in argv[1:] if a != "run"]
        script_name = args[0] if args else "start"
        scripts = package.get("scripts") or {}
        script = scripts.get(script_name) if isinstance(scripts, dict) else None
        argv = _argv(script) if isinstance(script, str) else []
    if argv and posixpath.basename(argv[0]) == "node":
        return ["node", *argv[1:]]
    if argv and argv[0].endswith((".js", ".mjs", ".cjs")):
        return ["node", *argv]
    main = package.get("main")
    return ["node", main if isinstance(main, str) else "server.js"]


def rewrite_node(orig: Original, workspace: Path) -> str:
    """``npm install`` in a ``node:latest-dev`` builder, ``node:latest`` runtime."""
    workdir = orig.workdir or "/app"
    argv = _node_entry(orig, workspace)
    manifests = [
        name
        for name in ("package.json", "package-lock.json", "npm-shrinkwrap.json")
        if (workspace / name).is_file()
    ]
    package_json = workspace / "package.json"
    has_deps = package_json.is_file() and '"dependencies"' in package_json.read_text(
        encoding="utf-8", errors="replace"
    )
    install = "npm ci --omit=dev" if len(manifests) > 1 else "npm install --omit=dev"
    out = [HEADER]
    if has_deps:
        out.append(
            f"FROM {NODE_DEV} AS builder\n"
            "USER root\n"
            f"WORKDIR {workdir}\n"
            f"COPY {' '.join(manifests)} ./\n"
            f"RUN {install}\n\n"
        )
    out.append(f"FROM {NODE_RUNTIME}\nWORKDIR {workdir}\n")
    out.append(_env_lines(orig, skip=("NODE_ENV",)))
    out.append("ENV NODE_ENV=production\n")
    if has_deps:
        node_modules = posixpath.join(workdir, "node_modules")
        out.append(f"COPY --from=builder --chown=node:node {node_modules} ./node_modules\n")
    if manifests:
        out.append(f"COPY --chown=node:node {' '.join(manifests)} ./\n")
    out.extend(_copy_line(line, chown="node:node") for line in _app_copies(orig))
    out.append(_tail(orig, argv))
    return "".join(out)


def _go_binary_name(orig: Original, workspace: Path) -> str:
    for run in orig.runs:
        match = re.search(r"go\s+build\b.*?\s-o\s+(\S+)", run)
        if match:
            return posixpath.basename(match.group(1)) or "app"
    mod = workspace / "go.mod"
    if mod.is_file():
        match = re.search(r"^module\s+(\S+)", mod.read_text(encoding="utf-8"), re.M)
        if match:
            return match.group(1).rstrip("/").rsplit("/", 1)[-1] or "app"
    return "app"


def rewrite_go(orig: Original, workspace: Path) -> str:
    """``go build`` in a ``go`` builder, ``static`` (or ``glibc-dynamic`` for cgo) runtime."""
    binary = _go_binary_name(orig, workspace)
    uses_cgo = any('import "C"' in p.read_text(errors="replace") for p in workspace.rglob("*.go"))
    runtime = GO_DYNAMIC if uses_cgo else GO_STATIC
    cgo = "CGO_ENABLED=1" if uses_cgo else "CGO_ENABLED=0"
    manifests = [name for name in ("go.mod", "go.sum") if (workspace / name).is_file()]
    argv = start_argv(orig)
    args = argv[1:] if argv and posixpath.basename(argv[0]) == binary else []
    out = [HEADER, f"FROM {GO_BUILD} AS build\nWORKDIR /src\n"]
    if manifests:
        out.append(f"COPY {' '.join(manifests)} ./\n")
        if "go.sum" in manifests:
            out.append("RUN go mod download\n")
    out.extend(_copy_line(CopyLine(line.sources, "./")) for line in _app_copies(orig))
    out.append(f"RUN {cgo} go build -trimpath -o /src/{binary} .\n\n")
    out.append(f"FROM {runtime}\n")
    out.append(_env_lines(orig))
    out.append(f"COPY --from=build /src/{binary} /usr/local/bin/{binary}\n")
    out.append(_tail(orig, [f"/usr/local/bin/{binary}", *args]))
    return "".join(out)


def migrate(workspace: Path) -> int:
    """Rewrite ``workspace/Dockerfile`` in place; returns the process exit code."""
    dockerfile = workspace / "Dockerfile"
    if not dockerfile.is_file():
        print(f"baseline: no Dockerfile in {workspace}", file=sys.stderr)
        return 2
    orig = read_original(dockerfile.read_text(encoding="utf-8"))
    language = detect_language(orig, workspace)
    if language == "python":
        text = rewrite_python(orig, workspace)
    elif language == "node":
        text = rewrite_node(orig, workspace)
    elif language == "go":
        text = rewrite_go(orig, workspace)
    else:
        print("baseline: language not recognised; Dockerfile left unchanged", file=sys.stderr)
        return 3
    dockerfile.write_text(text, encoding="utf-8")
    print(f"baseline: rewrote Dockerfile for {language}")
    return 0


def main(argv: list[str]) -> int:
    """Command-line entry: ``baseline_sut.py WORKSPACE``."""
    if len(argv) != 2:
        print("usage: python -I baseline_sut.py WORKSPACE", file=sys.stderr)
        return 2
    return migrate(Path(argv[1]).resolve())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
