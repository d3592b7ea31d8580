"""The SUT sandbox options: validated once, command line over ini, and what they let a real
agent do (read its own installation, get the one API key it is given)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_codegenie_eval.execution.isolation.sandbox import bwrap_status
from tests.conftest import copy_stub, newest_report, run_stub

needs_bwrap = pytest.mark.skipif(
    not bwrap_status().usable, reason=f"the SUT sandbox is unavailable: {bwrap_status().reason}"
)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--codegenie-sut-ro=."], "would show the SUT the pytest rootdir"),
        (["--codegenie-sut-ro=bench/stub/cases"], "inside the bench root"),
        (["--codegenie-sut-ro=does-not-exist"], "does not exist"),
        # the cassettes are bound into the SUT's sandbox too: the same guards
        (["--codegenie-cassettes=."], "--codegenie-cassettes '.' would show the SUT the pytest"),
        (["--codegenie-cassettes=bench/stub/cases"], "inside the bench root"),
        (["--codegenie-cassettes=bench"], "would show the SUT the bench root"),
        (["--codegenie-sandbox-user=root"], "is root: jails must run as an unprivileged"),
        (["--codegenie-sandbox-user=0:5"], "is root: jails must run as an unprivileged"),
        (["--codegenie-sandbox-user=no-such-user-x"], "no user 'no-such-user-x'"),
        (["--codegenie-sut-max-files=0"], "--codegenie-sut-max-files must be at least 1"),
        (["--codegenie-sut-env=NOT-A-NAME"], "takes a variable name"),
        (["--codegenie-sut-max-procs=0"], "--codegenie-sut-max-procs must be at least 1"),
        (["--codegenie-sut-max-memory-mb=lots"], "must be a whole number"),
        (
            ["--codegenie-require-sandbox", "--codegenie-sut-sandbox=none"],
            "contradicts --codegenie-sut-sandbox=none",
        ),
    ],
)
def test_bad_sandbox_options_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], fragment: str
) -> None:
    copy_stub(pytester.path)
    result = pytester.runpytest("--codegenie-bench=stub", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert fragment in result.stderr.str()


def test_an_unknown_sandbox_choice_is_refused(pytester: pytest.Pytester) -> None:
    copy_stub(pytester.path)
    pytester.makeini("[pytest]\ncodegenie_sut_network = wifi\n")
    result = pytester.runpytest("--codegenie-bench=stub")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "codegenie_sut_network must be one of none, host" in result.stderr.str()


def _only_case(root: Path) -> dict[str, Any]:
    (case,) = newest_report(root)["cases"]
    assert isinstance(case, dict)
    return case


@needs_bwrap
@pytest.mark.parametrize("given", [False, True])
def test_an_agent_installation_is_visible_only_when_listed(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, given: bool
) -> None:
    """The worked example of docs/sut-contract.md: an agent installed in its own folder,
    whose entry script imports a module beside it."""
    copy_stub(pytester.path)
    agent = tmp_path_factory.mktemp("opt-agent")
    agent.chmod(0o755)  # installed as a package manager leaves it: readable by every user
    (agent / "brain.py").write_text(
        "def solve(q):\n    return int(q.split()[-1]) + 1\n", encoding="utf-8"
    )
    (agent / "run.py").write_text(
        "import sys\nfrom pathlib import Path\nsys.path.insert(0, str(Path(__file__).parent))\n"
        "import brain\nws = Path(sys.argv[1])\n"
        "answer = brain.solve((ws / 'question.txt').read_text())\n"
        "(ws / 'answer.txt').write_text(f'{answer}\\n')\n",
        encoding="utf-8",
    )
    extra = [f"--codegenie-sut-ro={agent}"] if given else []
    result = run_stub(
        pytester,
        "-k",
        "alpha",
        f"--codegenie-sut={sys.executable} -I {agent / 'run.py'} {{workspace}}",
        *extra,
    )
    if given:
        result.assert_outcomes(passed=1)
    else:
        # run.py itself is bound (the command names it), its folder is not
        result.assert_outcomes(failed=1)
        assert "No module named 'brain'" in _only_case(pytester.path)["stderr_tail"]


@needs_bwrap
def test_an_agent_in_its_own_virtualenv_runs_with_its_packages(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A SUT started by a virtualenv's interpreter (``venv/bin/python``, a symlink inside
    the venv the sandbox binds whole) runs, and sees the packages installed in it."""
    import venv

    copy_stub(pytester.path)
    home = tmp_path_factory.mktemp("agent-venv")
    home.chmod(0o755)  # installed as a package manager leaves it: readable by every user
    venv.create(home / "venv", with_pip=False, symlinks=True)
    (site,) = (home / "venv" / "lib").glob("python3*/site-packages")
    (site / "agent_brain.py").write_text(
        "def solve(q):\n    return int(q.split()[-1]) + 1\n", encoding="utf-8"
    )
    (home / "run.py").write_text(
        "import sys\nfrom pathlib import Path\nimport agent_brain\nws = Path(sys.argv[1])\n"
        "answer = agent_brain.solve((ws / 'question.txt').read_text())\n"
        "(ws / 'answer.txt').write_text(f'{answer}\\n')\nprint(sys.prefix)\n",
        encoding="utf-8",
    )
    python = home / "venv" / "bin" / "python"
    assert python.is_symlink()
    result = run_stub(
        pytester, "-k", "alpha", f"--codegenie-sut={python} {home / 'run.py'} {{workspace}}"
    )
    result.assert_outcomes(passed=1)
    case = _only_case(pytester.path)
    assert case["sut_isolation"] == "bwrap"
    assert case["stdout_tail"].strip() == str(home / "venv")  # the venv's own interpreter


@pytest.mark.parametrize("via", ["option", "ini"])
def test_only_the_named_variables_reach_the_sut(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    copy_stub(pytester.path)
    monkeypatch.setenv("MY_AGENT_KEY", "key-given-on-purpose")
    monkeypatch.setenv("OTHER_SECRET", "never-given")
    pytester.makepyfile(
        agent="import json, os\nprint(json.dumps(sorted(os.environ)))\n"
        "print(os.environ.get('MY_AGENT_KEY', ''))\n"
        "print(os.environ.get('PWD') == os.getcwd())\n"
    )
    args = ["--codegenie-sut-env=MY_AGENT_KEY"] if via == "option" else []
    if via == "ini":
        pytester.makeini("[pytest]\ncodegenie_sut_env = MY_AGENT_KEY\n")
    run_stub(
        pytester,
        "-k",
        "alpha",
        f"--codegenie-sut={sys.executable} agent.py {{workspace}}",
        *args,
    )
    out = _only_case(pytester.path)["stdout_tail"].splitlines()
    names = set(json.loads(out[0]))
    assert out[1] == "key-given-on-purpose"
    assert out[2] == "True"  # PWD is the working directory, jailed or not
    assert "OTHER_SECRET" not in names
    assert names <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "HOME",
        "TMPDIR",
        "PWD",
        "MY_AGENT_KEY",
        "CODEGENIE_CANARY",
        "CODEGENIE_BENCH_INVOCATION_TAG",
        "CODEGENIE_CASE_ID",
        "CODEGENIE_WORKSPACE",
        "CODEGENIE_TASK_FILE",
        "CODEGENIE_REPEAT",  # which attempt (docs/sut-contract.md)
    }
