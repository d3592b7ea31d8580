"""The wheel ships what the package reads at run time: the results page's templates and
static files, the type marker and both entry points (a user installs from the wheel, not
from this checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO

# what a build must not see or write into the checkout (the same as .gitignore, plus .git)
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".codegenie",
    ".tox",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".ci-artifacts",
)


def test_the_wheel_holds_the_templates_static_files_and_entry_points(tmp_path: Path) -> None:
    # Build from a copy: building in the checkout writes pytest_codegenie_eval.egg-info
    # beside the sources, and a pytest starting meanwhile in another worker (the checkout is
    # on its sys.path) finds that half-written metadata and stops with an INTERNALERROR.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",  # offline: setuptools and wheel come from the dev extra
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("pytest_codegenie_eval-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "pytest_codegenie_eval"
    needed = [
        p.relative_to(REPO).as_posix()
        for folder in ("output/html/templates", "output/html/static")
        for p in (package / folder).iterdir()
    ]
    assert len(needed) >= 10
    # every module of every subpackage: a subpackage missing from pyproject's list is caught
    needed += [p.relative_to(REPO).as_posix() for p in package.rglob("*.py")]
    missing = [name for name in [*needed, "pytest_codegenie_eval/py.typed"] if name not in names]
    assert not missing, missing
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for line in (
        "codegenie_eval = pytest_codegenie_eval.pytest_plugin.hooks",
        "codegenie_eval_hooks = pytest_codegenie_eval.pytest_plugin.hookspec_plugin",
        "codegenie-eval = pytest_codegenie_eval.cli.main:main",
    ):
        assert line in text
