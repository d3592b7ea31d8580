"""The harness's own peak memory when a SUT leaves a huge file in its workspace. Prints
figures, asserts nothing.

A SUT writes a file of ``--mb`` MiB (default 1024, random bytes so nothing compresses or
stays sparse) into the workspace of one case of the plugin's stub task class, under the
real sandbox and limits. The harness then diffs, hashes and scores the workspace. The peak
RSS of the pytest process (the harness; the SUT and the rubric are separate processes) is
compared with a baseline run whose SUT writes nothing. Target: <= 200 MiB.

    .venv/bin/python benchmarks/bench_harness_memory.py [--mb 1024]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUB = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bench" / "stub"
_RUN = (
    "import resource, sys, pytest\n"
    "code = pytest.main(sys.argv[1:])\n"
    "print('PEAK-KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)
_WRITER = (
    "import os, sys\n"
    "mb = int(sys.argv[2])\n"
    "with open(os.path.join(sys.argv[1], 'huge.bin'), 'wb') as fh:\n"
    "    for _ in range(mb):\n"
    "        fh.write(os.urandom(1024 * 1024))\n"
)


def _run(project: Path, mb: int) -> tuple[float, int]:
    writer = project / "writer.py"
    limit = str(mb + 256)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _RUN,
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "--codegenie-bench=stub",
            "--codegenie-no-cache",
            f"--codegenie-sut={sys.executable} {writer} {{workspace}} {mb}",
            f"--codegenie-sut-max-workspace-mb={limit}",
            f"--codegenie-sut-max-file-mb={limit}",
            "-k",
            "alpha",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    lines = done.stdout.splitlines()
    (peak,) = [ln for ln in lines if ln.startswith("PEAK-KB ")]
    if "SUT exit code: 0" not in done.stdout:
        raise SystemExit(f"the writing SUT did not finish:\n{done.stdout[-2000:]}")
    return wall, int(peak.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the file the SUT writes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="codegenie-bench-mem-") as tmp:
        project = Path(tmp)
        shutil.copytree(STUB, project / "bench" / "stub")
        (project / "writer.py").write_text(_WRITER)
        base_wall, base_kb = _run(project, 0)
        wall, kb = _run(project, args.mb)
    print(f"SUT writes nothing:       peak RSS {base_kb / 1024:7.1f} MiB  ({base_wall:.1f} s)")
    print(f"SUT writes {args.mb} MiB file: peak RSS {kb / 1024:7.1f} MiB  ({wall:.1f} s)")
    print(f"harness growth: {(kb - base_kb) / 1024:.1f} MiB; target <= 200 MiB peak")


if __name__ == "__main__":
    main()
