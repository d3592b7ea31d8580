"""Reading the process table: are the processes a hostile case started gone? And how much
memory did a harness run take?"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest


def alive(pid: int) -> bool:
    """Whether pid is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def survivors(pids: list[int], within_s: float = 2.0) -> list[int]:
    """The pids still alive once the deadline passes (returns early when all are gone)."""
    deadline = time.monotonic() + within_s
    living = [pid for pid in pids if alive(pid)]
    while living and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a process table: there is nothing to wait on
        living = [pid for pid in living if alive(pid)]
    return living


# ``python -c RSS_PROBE <pytest args>``: a pytest run that prints its own peak RSS. That is
# VmHWM, the peak of its own memory: ``ru_maxrss`` starts at the peak of the process that
# started it (Linux keeps the old memory's high-water mark across exec), and an xdist worker
# that ran other tests first has one far above any limit a test could check.
RSS_PROBE = """\
import sys
import pytest
code = pytest.main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print("ADV-MAXRSS-KB", peak)
sys.exit(int(code))
"""


def run_measuring_rss(
    pytester: pytest.Pytester, *args: str, timeout: float = 120
) -> tuple[pytest.RunResult, int]:
    """Run pytest with ``args`` in a child that reports its own peak RSS (in KiB)."""
    result = pytester.run(
        sys.executable, "-c", RSS_PROBE, "-p", "no:cacheprovider", *args, timeout=timeout
    )
    (line,) = [ln for ln in result.outlines if ln.startswith("ADV-MAXRSS-KB ")]
    return result, int(line.split()[1])
