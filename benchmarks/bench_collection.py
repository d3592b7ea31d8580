"""Collection of 2,000 generated cases (with digest verification) against
``pytest --collect-only`` of 2,000 trivial parametrized tests. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_collection.py [--cases 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _generate import generate


def _time(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "bench-run", args.cases)
        plain = root / "plain"
        plain.mkdir()
        (plain / "test_trivial.py").write_text(
            "import pytest\n\n\n"
            f"@pytest.mark.parametrize('i', range({args.cases}))\n"
            "def test_trivial(i):\n    assert i >= 0\n"
        )
        base = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                "-p", "no:hypothesispytest"]  # fmt: skip
        ours = min(
            _time([*base, "--codegenie-bench=gen"], root / "bench-run") for _ in range(args.repeat)
        )
        trivial = min(_time(base, plain) for _ in range(args.repeat))
    print(f"collect {args.cases} bench cases (digests verified): {ours:.2f} s "
          f"= {args.cases / ours:,.0f} cases/s")  # fmt: skip
    print(f"collect {args.cases} trivial parametrized tests:     {trivial:.2f} s")
    print(f"ratio bench/trivial: {ours / trivial:.2f}x")


if __name__ == "__main__":
    main()
