"""The ``codegenie-eval`` console script: run, verify, repair, digests, compare, plan,
init, merge, report, promote-verdict.

Exit codes (README.md): 0 success, 1 generic failure (failing cases, bad arguments, and
for ``promote-verdict`` insufficient evidence), 2 cost cap hit, 3 task class not registered,
4 bench directory missing, 5 audit chain tamper, 6 digest mismatch. Heavy imports (pytest,
pydantic, numpy) are deferred into the subcommands so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pytest_codegenie_eval import defaults
from pytest_codegenie_eval.taskclass.layout import CASES

EXIT_OK = 0
EXIT_GENERIC = 1
EXIT_COST_CAP = 2
EXIT_TASK_CLASS_NOT_REGISTERED = 3
EXIT_BENCH_DIR_MISSING = 4
EXIT_CHAIN_TAMPER = 5
EXIT_DIGEST_MISMATCH = 6

DEFAULT_STATE_DIR = defaults.STATE_DIR
DEFAULT_BENCH_ROOT = defaults.BENCH_ROOT
DEFAULT_TIERS = defaults.TIERS


# option dest -> (the ini key pytest reads, the default when the project sets none)
_PROJECT_KEYS = {
    "state_dir": ("codegenie_state_dir", DEFAULT_STATE_DIR),
    "bench_root": ("codegenie_bench_root", DEFAULT_BENCH_ROOT),
    "tiers": ("codegenie_tiers", DEFAULT_TIERS),
}
_DEFAULT_HELP = {
    dest: f"default: the project's {ini} (pytest.ini, pyproject.toml, tox.ini, setup.cfg), "
    f"else {default}, relative to the pytest rootdir"
    for dest, (ini, default) in _PROJECT_KEYS.items()
}


def _fill_from_project(args: argparse.Namespace) -> None:
    """Options not given on the command line come from the project's pytest configuration,
    found and read by pytest itself (rootdir and ini file as a pytest run in this directory
    would find them), so the console script and the plugin never disagree on where the
    state directory, the bench root or the tier file are. Command line over ini."""
    missing = [dest for dest in _PROJECT_KEYS if getattr(args, dest, "") is None]
    if not missing:
        return
    from _pytest.config import _prepareconfig

    config = _prepareconfig(["-p", "no:cacheprovider"])
    try:
        root = config.rootpath
        for dest in missing:
            ini, default = _PROJECT_KEYS[dest]
            try:
                value = config.getini(ini)
            except ValueError:  # the plugin is disabled (-p no:codegenie_eval in addopts)
                value = ""
            path = Path(str(value or default)).expanduser()
            setattr(args, dest, str(path if path.is_absolute() else root / path))
    finally:
        config._ensure_unconfigure()


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments, which here means "cost cap hit": use 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_GENERIC, f"{self.prog}: error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-codegenie-eval")
    except PackageNotFoundError:  # pragma: no cover - a checkout without an install
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="codegenie-eval",
        description="Score coding agents on benches with pytest; verify and judge the evidence.",
        epilog="exit codes: 0 ok, 1 generic, 2 cost cap hit, 3 task class not registered, "
        "4 bench directory missing, 5 audit chain tamper, 6 digest mismatch",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run pytest with the plugin (all further arguments go to pytest)",
        description="Run pytest, e.g. `codegenie-eval run --codegenie-bench=vuln-remediation -n 2`,"
        " and map the harness outcome to the exit codes above.",
    )
    run.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments for pytest")
    ver = sub.add_parser("verify", help="walk the audit chain and every report it names")
    ver.add_argument("--state-dir", default=None, help=_DEFAULT_HELP["state_dir"])
    ver.add_argument("--since", default=None, help="check reports recorded at or after ISO time")
    ver.add_argument("--strict", action="store_true", help="also fail on unrecorded reports")
    ver.add_argument(
        "--allow-empty",
        action="store_true",
        help="exit 0 for a chain with no records (by default an empty chain is an error, so "
        "a mistyped --state-dir cannot pass)",
    )
    ver.add_argument(
        "--expected-head", default=None, metavar="HEX", help="fail unless this head is in the chain"
    )
    dig = sub.add_parser("digests", help="print, check or rewrite a task class's digests.yaml")
    dig.add_argument("--task-class", required=True)
    dig.add_argument("--bench-root", default=None, help=_DEFAULT_HELP["bench_root"])
    mode = dig.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite cases/digests.yaml")
    mode.add_argument("--check", action="store_true", help="exit 6 if any pin is stale")
    rep = sub.add_parser(
        "repair",
        help="clean up after a killed session: temporary files, a torn chain tail, "
        "reports without a record (never rewrites history)",
    )
    rep.add_argument("--state-dir", default=None, help=_DEFAULT_HELP["state_dir"])
    rep.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    cmp_ = sub.add_parser(
        "compare",
        help="paired comparison of two runs of one task class (is B better than A?)",
        description="A and B are report files, recorded run ids (8+ hex digits) or "
        "latest:TASK_CLASS[:SUT]. Exit 0 when compared (with --margin: only when B is "
        "non-inferior), 1 otherwise.",
    )
    cmp_.add_argument("a", metavar="A")
    cmp_.add_argument("b", metavar="B")
    cmp_.add_argument("--state-dir", default=None, help=_DEFAULT_HELP["state_dir"])
    cmp_.add_argument(
        "--margin",
        type=float,
        default=None,
        metavar="M",
        help="non-inferiority: exit 0 only when the 95%% lower bound on B - A exceeds -M",
    )
    cmp_.add_argument("--json", action="store_true", help="print the comparison as JSON")
    tr = sub.add_parser(
        "transcripts",
        help="print the model gateway's transcripts of a run as JSON lines",
        description="RUN is a report file, a recorded run id (8+ hex digits) or "
        "latest:TASK_CLASS[:SUT]. One JSON line per model call, with the case id and attempt "
        "added. Exit 1 when a transcript the report names is missing or no longer matches "
        "its digest.",
    )
    tr.add_argument("run", metavar="RUN")
    tr.add_argument("--case", default=None, metavar="CASE_ID", help="only this case")
    tr.add_argument("--state-dir", default=None, help=_DEFAULT_HELP["state_dir"])
    plan = sub.add_parser(
        "plan",
        help="how many cases clear a tier's threshold at a given pass rate",
        description="The smallest bench whose lower_bound_95 reaches the tier's threshold "
        "with the given probability, for an agent passing a share RATE of cases: exact "
        "for one attempt per case, simulated for --repeat K > 1.",
    )
    plan.add_argument("--tier", required=True)
    plan.add_argument("--rate", type=float, required=True, help="expected pass rate in [0, 1]")
    plan.add_argument("--repeat", type=int, default=1, metavar="K", help="attempts per case")
    plan.add_argument(
        "--spread",
        type=float,
        default=0.0,
        metavar="SD",
        help="with --repeat K > 1: the standard deviation of the cases' own pass rates (cases "
        "differ in difficulty; 0 assumes they do not, which overstates power)",
    )
    plan.add_argument("--power", type=float, default=0.8, help="default: %(default)s")
    plan.add_argument("--tiers", default=None, help=_DEFAULT_HELP["tiers"])
    init = sub.add_parser(
        "init",
        help="write an uncalibrated trust-tier file and, with --task-class, a task-class "
        "skeleton that passes the fence",
    )
    init.add_argument("--task-class", default=None, metavar="NAME")
    init.add_argument("--bench-root", default=None, help=_DEFAULT_HELP["bench_root"])
    init.add_argument("--tiers", default=None, help=_DEFAULT_HELP["tiers"])
    merge = sub.add_parser(
        "merge",
        help="join the shard reports of a --codegenie-shard run into one recorded run",
        description="SOURCE is a shard report file (in <state dir>/runs/) or a directory "
        "searched for state directories (CI artifacts: one per shard job; in each, the "
        "newest report of every shard counts). The shards must be one run: the same task "
        "class, cases, SUT, rubric, harness and repeats, every shard present once and whole. "
        "The merged report (aggregate, bound and run id as one machine running every case "
        "would have written) is recorded in --state-dir with the shard reports' digests.",
    )
    merge.add_argument("sources", nargs="+", metavar="SOURCE")
    merge.add_argument("--state-dir", default=None, help=_DEFAULT_HELP["state_dir"])
    merge.add_argument("--task-class", default=None, help="merge only this task class")
    merge.add_argument(
        "--expected-head",
        action="append",
        default=[],
        metavar="SHARD=HEX",
        help="fail unless shard I/N's audit chain has this head (the `chain head` its job "
        "printed); give it once per shard",
    )
    merge.add_argument(
        "--allow-unrecorded",
        action="store_true",
        help="accept shard report files without their audit chain (their origin is then "
        "unproven; the merged record says so with an empty chain head)",
    )
    html = sub.add_parser(
        "report",
        help="build the static results page (HTML, no server, no network) from a state dir",
        description="Write a self-contained site to --out: an overview of every task class, "
        "the trend of its bound, its cases with their diffs, and a comparison of two runs "
        "(the newest two, or --compare A B). Needs the html extra: "
        "pip install 'pytest-codegenie-eval[html]'.",
    )
    html.add_argument("--out", required=True, metavar="DIR")
    html.add_argument("--state-dir", default=None, help=_DEFAULT_HELP["state_dir"])
    html.add_argument("--task-class", default=None, help="only this task class")
    html.add_argument("--tiers", default=None, help=_DEFAULT_HELP["tiers"])
    html.add_argument(
        "--bench-root",
        default=None,
        help=_DEFAULT_HELP["bench_root"] + "; verdicts are judged afresh from the chain with it",
    )
    html.add_argument(
        "--compare",
        nargs=2,
        default=None,
        metavar=("A", "B"),
        help="the runs the compare page pairs (report file, run id or latest:TASK_CLASS[:SUT])",
    )
    pv = sub.add_parser("promote-verdict", help="judge recorded evidence for a trust tier")
    pv.add_argument("--task-class", required=True)
    pv.add_argument("--tier", required=True)
    pv.add_argument("--bench-root", default=None, help=_DEFAULT_HELP["bench_root"])
    pv.add_argument("--state-dir", default=None, help=_DEFAULT_HELP["state_dir"])
    pv.add_argument("--tiers", default=None, help=_DEFAULT_HELP["tiers"])
    for reader in (ver, rep, cmp_, tr, merge, html, pv):
        reader.add_argument(
            "--chain-key-env",
            default=None,
            metavar="VAR",
            help="the environment variable holding the audit chain's key (a chain recorded "
            "with --codegenie-chain-key-env is only checked, and appended to, with it)",
        )
    return parser


def _task_class_dir(bench_root: str, name: str) -> Path | int:
    from pytest_codegenie_eval.errors import BenchRootMissing, TaskClassNotFound
    from pytest_codegenie_eval.taskclass.loader import resolve_task_class_dir

    try:
        return resolve_task_class_dir(Path(bench_root), name)
    except BenchRootMissing as exc:
        print(f"codegenie-eval: {exc}", file=sys.stderr)
        return EXIT_BENCH_DIR_MISSING
    except TaskClassNotFound as exc:
        print(f"codegenie-eval: {exc}", file=sys.stderr)
        return EXIT_TASK_CLASS_NOT_REGISTERED


def _state_dir_exists(state_dir: Path, command: str) -> bool:
    if state_dir.is_dir():
        return True
    print(
        f"codegenie-eval {command}: state directory {state_dir} does not exist (a pytest run "
        "with the plugin creates it; check --state-dir)",
        file=sys.stderr,
    )
    return False


def cmd_verify(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.store.audit import format_verify_summary, verify

    if not _state_dir_exists(Path(args.state_dir), "verify"):
        return EXIT_GENERIC
    head = args.expected_head
    if head is not None and not _is_head(head):
        # a mistyped head is a usage error, not evidence of tampering
        print(
            f"codegenie-eval verify: --expected-head {head!r} is not a chain head (64 hex "
            "digits, as the summary's `chain head:` prints it)",
            file=sys.stderr,
        )
        return EXIT_GENERIC
    try:
        result = verify(
            Path(args.state_dir), args.since, expected_head=args.expected_head, strict=args.strict
        )
    except ValueError as exc:
        print(f"codegenie-eval verify: {exc}", file=sys.stderr)
        return EXIT_GENERIC
    for problem in result.problems:
        print(f"TAMPER: {problem}")
    print(format_verify_summary(result))
    print(f"records {result.records}, head {result.head or 'none (empty chain)'}")
    if not result.ok:
        if result.repairable:
            print(
                "next: these are leftovers of a killed session, not tampering; run "
                f"`codegenie-eval repair --state-dir {args.state_dir}` (it quarantines, never "
                "deletes, and records what it did)"
            )
        else:
            print(
                "next: the chain or a report it names was changed; `codegenie-eval repair` "
                "does not rewrite history: restore the state directory from a backup or CI "
                "artifact and check it with --expected-head"
            )
        return EXIT_CHAIN_TAMPER
    from pytest_codegenie_eval.store.repair import leftovers

    found = leftovers(Path(args.state_dir))
    if found:
        # the chain verifies; --strict makes unrecorded files a failure, plain verify says so
        print(
            f"leftovers of a killed session: {', '.join(found)}; run "
            f"`codegenie-eval repair --state-dir {args.state_dir}`"
        )
    if result.records == 0 and not args.allow_empty:
        print(
            f"codegenie-eval verify: empty chain: no run is recorded in {args.state_dir} "
            "(pass --allow-empty if that is expected)",
            file=sys.stderr,
        )
        return EXIT_GENERIC
    return EXIT_OK


def cmd_repair(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.store.repair import repair

    state_dir = Path(args.state_dir)
    if not _state_dir_exists(state_dir, "repair"):
        return EXIT_GENERIC
    try:
        result = repair(state_dir, dry_run=args.dry_run)
    except OSError as exc:
        print(
            f"codegenie-eval repair: {state_dir} cannot be changed ({exc.strerror or exc}); "
            "nothing was changed. `--dry-run` shows what a repair would do.",
            file=sys.stderr,
        )
        return EXIT_GENERIC
    if result.refused:
        for problem in result.refused:
            print(f"TAMPER: {problem}")
        print(
            "codegenie-eval repair: refused, nothing changed: the chain has problems a killed "
            "session cannot cause; restore the state directory from a backup"
        )
        return EXIT_CHAIN_TAMPER
    for action in result.actions:
        print(("would " if result.dry_run else "") + action)
    if not result.actions:
        print(f"nothing to repair in {state_dir}")
    elif not result.dry_run:
        print(f"recorded the repair in {result.note}; chain head {result.head}")
    return EXIT_OK


def cmd_digests(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.taskclass.digests import (
        compute_digests,
        read_digests,
        render_digests,
        stale_pins,
        write_digests,
    )

    tc_dir = _task_class_dir(args.bench_root, args.task_class)
    if isinstance(tc_dir, int):
        return tc_dir
    cases = tc_dir / CASES
    if not cases.is_dir():
        print(f"codegenie-eval: {cases} does not exist", file=sys.stderr)
        return EXIT_BENCH_DIR_MISSING
    try:
        current = compute_digests(cases)
        pinned = read_digests(cases)
    except CodegenieEvalError as exc:
        print(f"codegenie-eval: {exc}", file=sys.stderr)
        return EXIT_DIGEST_MISMATCH
    stale = stale_pins(pinned, current)
    if args.write:
        path = write_digests(cases)
        changed = ", ".join(m.name for m in stale) or "none"
        print(f"wrote {path} ({len(current)} cases; re-pinned: {changed})")
        return EXIT_OK
    if args.check:
        for m in stale:
            was = m.pinned if m.pinned is not None else "(not pinned)"
            now = m.actual if m.actual is not None else "(no such case directory)"
            print(f"stale pin: {m.name}: pinned {was} actual {now}")
        return EXIT_DIGEST_MISMATCH if stale else EXIT_OK
    sys.stdout.write(render_digests(current))
    return EXIT_OK


def cmd_transcripts(args: argparse.Namespace) -> int:
    import json

    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.store.reports import resolve
    from pytest_codegenie_eval.store.statedir import StateDir, read_transcript

    state_dir = Path(args.state_dir)
    try:
        report = resolve(args.run, state_dir)
    except CodegenieEvalError as exc:
        print(f"codegenie-eval transcripts: {exc}", file=sys.stderr)
        return EXIT_GENERIC
    directory = StateDir(state_dir).transcripts
    problems = 0
    for case in report.cases:
        usage = case.model_usage
        if (args.case and case.case_id != args.case) or usage is None:
            continue
        if not usage.transcript_digest:
            continue
        data = read_transcript(directory, usage.transcript_digest)
        if data is None:
            problems += 1
            print(
                f"codegenie-eval transcripts: {case.case_id} attempt {case.repeat}: transcript "
                f"{usage.transcript_digest} is missing or altered",
                file=sys.stderr,
            )
            continue
        for line in data.decode("utf-8", errors="replace").splitlines():
            call = json.loads(line)
            call.update(case_id=case.case_id, repeat=case.repeat, task_class=case.task_class)
            print(json.dumps(call, sort_keys=True, ensure_ascii=False))
    return EXIT_GENERIC if problems else EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.evidence.compare import compare, comparison_json, format_comparison
    from pytest_codegenie_eval.store.reports import resolve

    if args.margin is not None and not 0.0 <= args.margin <= 1.0:
        print("codegenie-eval compare: --margin must be in [0, 1]", file=sys.stderr)
        return EXIT_GENERIC
    state_dir = Path(args.state_dir)
    try:
        result = compare(resolve(args.a, state_dir), resolve(args.b, state_dir))
    except CodegenieEvalError as exc:
        print(f"codegenie-eval compare: {exc}", file=sys.stderr)
        return EXIT_GENERIC
    if args.json:
        print(comparison_json(result))
    else:
        print("\n".join(format_comparison(result, margin=args.margin)))
    if not result.paired:
        print("codegenie-eval compare: the runs share no case", file=sys.stderr)
        return EXIT_GENERIC
    if args.margin is not None and not result.non_inferior(args.margin):
        return EXIT_GENERIC
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.evidence.planning import (
        MAX_CASES,
        cases_needed,
        power_curve,
        stays_above,
    )
    from pytest_codegenie_eval.evidence.tiers import load_tier_config

    if args.spread and args.repeat == 1:
        print("codegenie-eval plan: --spread needs --repeat K > 1", file=sys.stderr)
        return EXIT_GENERIC
    try:
        threshold = load_tier_config(Path(args.tiers)).threshold(args.tier)
        result = cases_needed(
            args.rate, threshold, repeats=args.repeat, power=args.power, spread=args.spread
        )
    except (CodegenieEvalError, ValueError) as exc:
        print(f"codegenie-eval plan: {exc}", file=sys.stderr)
        return EXIT_GENERIC
    attempts = "1 attempt" if args.repeat == 1 else f"{args.repeat} attempts"
    if args.spread:
        attempts += f", case-to-case spread {args.spread:.2f}"
    if result.cases is None:
        print(
            f"pass rate {args.rate:.2f}, {attempts} per case: no bench of up to "
            f"{MAX_CASES} cases reaches {args.tier} {threshold:.2f} (the rate must exceed it)"
        )
        return EXIT_GENERIC
    print(
        f"pass rate {args.rate:.2f}, {attempts} per case: {result.cases} cases reach "
        f"{args.tier} {threshold:.2f} with {result.power:.0%} probability ({result.method})"
    )
    if args.repeat == 1:
        # power is a sawtooth in n: say where it stops dipping, and show the curve
        steady = stays_above(args.rate, threshold, args.power, result.cases)
        if steady is not None and steady > result.cases:
            print(
                f"power dips below {args.power:.0%} again between {result.cases + 1} and "
                f"{steady - 1} cases; from {steady} cases on it stays at or above it"
            )
        elif steady is not None:
            print(f"from {steady} cases on power stays at or above {args.power:.0%}")
        low = max(1, result.cases - 5)
        high = max(result.cases, steady or result.cases) + 6
        curve = power_curve(args.rate, threshold, range(low, high))
        print("power by bench size: " + " · ".join(f"{n} {p:.1%}" for n, p in curve))
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.errors import ChainTamperDetected, ShardMergeError
    from pytest_codegenie_eval.evidence.sharding import find_shard_sources, merge_shards
    from pytest_codegenie_eval.store.audit import write_run_record

    notes: list[str] = []
    try:
        sources = find_shard_sources(
            [Path(source) for source in args.sources],
            allow_unrecorded=args.allow_unrecorded,
            notes=notes,
        )
        reports = merge_shards(sources, task_class=args.task_class)
    except ShardMergeError as exc:
        print(f"codegenie-eval merge: {exc}", file=sys.stderr)
        return EXIT_GENERIC
    for note in notes:
        print(f"note: {note}")
    wrong = _unexpected_heads(args.expected_head, sources)
    if wrong is not None:
        print(f"codegenie-eval merge: {wrong}", file=sys.stderr)
        return EXIT_CHAIN_TAMPER
    state_dir = Path(args.state_dir)
    for report in reports:
        try:
            path, head = write_run_record(report, state_dir)
        except ChainTamperDetected as exc:
            print(f"codegenie-eval merge: {exc}", file=sys.stderr)
            return EXIT_CHAIN_TAMPER
        except OSError as exc:
            print(f"codegenie-eval merge: could not record the merged run: {exc}", file=sys.stderr)
            return EXIT_GENERIC
        shards = ", ".join(f"{m.index}/{m.count}" for m in report.merged_from)
        print(
            f"{report.task_class}: merged shards {shards}: {report.n} cases, "
            f"{report.passed_count} passed, mean {report.mean:.3f}, lower_bound_95 "
            f"{report.lower_bound_95:.3f} ({report.bound.method}), "
            f"{'complete' if report.complete else 'PARTIAL'}"
        )
        print(f"  run id: {report.run_id}")
        print(f"  report: {path}")
        print(f"  chain head: {head}")
    _step_summary("merge", reports=reports)
    return EXIT_OK


def _step_summary(command: str, *, reports: Sequence[Any] = (), verdict: Any | None = None) -> None:
    """Under GitHub Actions, append what the command decided to ``$GITHUB_STEP_SUMMARY``
    (a failure to write it is said on stderr; the command's result stands)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    from pytest_codegenie_eval.output.github import (
        append_markdown,
        step_summary,
        verdict_summary,
    )

    text = step_summary([(r, None) for r in reports]) if reports else ""
    if verdict is not None:
        text += verdict_summary(verdict)
    error = append_markdown(target, text)
    if error is not None:
        print(f"codegenie-eval {command}: {error}", file=sys.stderr)


def _is_head(text: str) -> bool:
    """A chain head as the summary prints it: 64 hex digits (either case)."""
    return re.fullmatch(r"[0-9a-fA-F]{64}", text) is not None


def _unexpected_heads(expected: list[str], sources: Sequence[Any]) -> str | None:
    """What is wrong with the shards' chain heads against ``SHARD=HEX`` pairs, if anything."""
    if not expected:
        return None
    wanted: dict[str, str] = {}
    for pair in expected:
        shard, sep, head = pair.partition("=")
        if not sep or not shard or not _is_head(head.strip()):
            return f"--expected-head {pair!r} is not SHARD=HEX (e.g. 1/3=<64 hex digits>)"
        wanted[shard.strip()] = head.strip().lower()
    seen: dict[str, str | None] = {}
    for source in sources:
        seen[f"{source.shard.index}/{source.shard.count}"] = source.chain_head
    for shard, head in sorted(wanted.items()):
        if shard not in seen:
            return f"--expected-head names shard {shard}, which is not among the sources"
        if seen[shard] != head:
            return (
                f"shard {shard}: its audit chain's head is {seen[shard] or 'none'}, not the "
                f"{head} its job printed: the artifact was changed after the job ended"
            )
    missing = sorted(set(seen) - set(wanted))
    if missing:
        return f"--expected-head is missing for shard(s) {', '.join(missing)}"
    return None


def cmd_report(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.output.html import build_site

    try:
        built = build_site(
            Path(args.state_dir),
            Path(args.out),
            task_class=args.task_class,
            tiers_path=Path(args.tiers),
            compare_refs=tuple(args.compare) if args.compare else None,
            bench_root=Path(args.bench_root),
        )
    except CodegenieEvalError as exc:
        print(f"codegenie-eval report: {exc}", file=sys.stderr)
        return EXIT_GENERIC
    print(
        f"results page: {built.index} ({built.task_classes} task class(es), {built.runs} "
        f"run(s), {built.attempts} attempt(s))"
    )
    return EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.taskclass.scaffold import (
        ScaffoldError,
        write_task_class,
        write_tiers,
    )

    tiers = Path(args.tiers)
    if write_tiers(tiers):
        print(f"wrote {tiers} (uncalibrated thresholds: edit them before trusting a verdict)")
    else:
        print(f"kept {tiers} (it exists)")
    if args.task_class:
        try:
            directory = write_task_class(Path(args.bench_root), args.task_class)
        except ScaffoldError as exc:
            print(f"codegenie-eval init: {exc}", file=sys.stderr)
            return EXIT_GENERIC
        print(f"wrote {directory} (3 example cases, pinned)")
        print(f"next: pytest --codegenie-fence && pytest --codegenie-bench={args.task_class}")
    return EXIT_OK


def cmd_promote_verdict(args: argparse.Namespace) -> int:
    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.evidence.promotion import format_verdict
    from pytest_codegenie_eval.evidence.verdicts import recommend
    from pytest_codegenie_eval.taskclass.loader import load_registration

    tc_dir = _task_class_dir(args.bench_root, args.task_class)
    if isinstance(tc_dir, int):
        return tc_dir
    try:
        task_class = load_registration(tc_dir)
        verdict, path, not_written = recommend(
            state_dir=Path(args.state_dir),
            tiers_path=Path(args.tiers),
            task_class=task_class,
            tier=args.tier,
        )
    except CodegenieEvalError as exc:
        print(f"codegenie-eval promote-verdict: {exc}", file=sys.stderr)
        return EXIT_GENERIC
    if verdict is None:  # pragma: no cover - recommend() always answers an explicit tier
        return EXIT_GENERIC
    print(format_verdict(verdict))
    _step_summary("promote-verdict", verdict=verdict)
    if path is not None:
        print(f"recommendation: {path}")
    else:  # a read-only judge: the verdict above stands, only its file is missing
        print(f"codegenie-eval promote-verdict: {not_written}", file=sys.stderr)
    if not verdict.chain_verified:
        return EXIT_CHAIN_TAMPER
    return EXIT_OK if verdict.evidence_sufficient else EXIT_GENERIC


class _OutcomeProbe:
    """Registered into the pytest run to read the harness outcome before it is torn down."""

    def __init__(self) -> None:
        self.outcome: Any = None

    def pytest_unconfigure(self, config: Any) -> None:
        from pytest_codegenie_eval.pytest_plugin.activation import SESSION_KEY

        bench = config.stash.get(SESSION_KEY, None)
        if bench is not None:
            self.outcome = bench.outcome


def _design_options(argv: list[str]) -> list[str]:
    """``run``'s own options (the design's interface) turned into the plugin's; every other
    argument goes to pytest unchanged. With ``--task-class`` the default output is JSON
    lines on stdout (one per case attempt, one aggregate per task class); without it, and
    with ``--format=human``, pytest's own terminal output."""
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    own.add_argument("--task-class", action="append", default=[])
    own.add_argument("--cases", default=None)
    own.add_argument("--concurrency", type=int, default=None)
    own.add_argument("--max-cost-usd", default=None)
    own.add_argument("--no-cache", action="store_true")
    own.add_argument("--with-verdict", nargs="?", const="", default=None)
    own.add_argument("--format", choices=("human", "jsonl"), default=None)
    try:
        known, rest = own.parse_known_args(argv)
    except SystemExit:  # argparse's own message is already on stderr
        raise ValueError("bad value for one of run's options (see codegenie-eval run -h)") from None
    out: list[str] = []
    if known.task_class:
        out.append("--codegenie-bench=" + ",".join(known.task_class))
    if known.cases:
        out.append(f"--codegenie-cases={known.cases}")
    if known.concurrency is not None:
        if known.concurrency < 1:
            raise ValueError(f"--concurrency must be at least 1, got {known.concurrency}")
        if known.concurrency > 1:
            out += ["-n", str(known.concurrency)]  # pytest-xdist workers
    if known.max_cost_usd is not None:
        out.append(f"--codegenie-max-cost-usd={known.max_cost_usd}")
    if known.no_cache:
        out.append("--codegenie-no-cache")
    if known.with_verdict is not None:
        out.append(f"--codegenie-verdict={known.with_verdict or _next_tier(known.task_class)}")
    fmt = known.format or ("jsonl" if known.task_class else "human")
    if fmt == "jsonl":
        out += ["--codegenie-jsonl=-", "-p", "no:terminal"]
    return out + rest


def _next_tier(task_classes: list[str]) -> str:
    """The tier directly above the task classes' current tier (``--with-verdict`` alone)."""
    from pytest_codegenie_eval.errors import CodegenieEvalError
    from pytest_codegenie_eval.evidence.tiers import load_tier_config

    probe = argparse.Namespace(tiers=None)
    _fill_from_project(probe)
    try:
        config = load_tier_config(Path(probe.tiers))
        tiers = {config.next_tier(config.current_tier(name)) for name in task_classes}
    except (CodegenieEvalError, ValueError) as exc:
        raise ValueError(f"--with-verdict: {exc}") from None
    if len(tiers) != 1 or None in tiers:
        raise ValueError(
            "--with-verdict: the task classes are at different tiers, or at the highest one; "
            "name the tier: --with-verdict=TIER"
        )
    (tier,) = tiers
    assert tier is not None
    return tier


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    pytest_args = list(args.pytest_args)
    if pytest_args and pytest_args[0] == "--":
        pytest_args = pytest_args[1:]
    else:
        try:
            pytest_args = _design_options(pytest_args)
        except ValueError as exc:
            print(f"codegenie-eval run: {exc}", file=sys.stderr)
            return EXIT_GENERIC
    probe = _OutcomeProbe()
    code = pytest.main(pytest_args, plugins=[probe])
    outcome = probe.outcome
    if outcome is not None:
        if outcome.chain_tampered:
            return EXIT_CHAIN_TAMPER
        if outcome.digest_mismatch:
            return EXIT_DIGEST_MISMATCH
        if outcome.bench_root_missing:
            return EXIT_BENCH_DIR_MISSING
        if outcome.task_class_missing:
            return EXIT_TASK_CLASS_NOT_REGISTERED
        if outcome.cost_cap_hit:
            return EXIT_COST_CAP
    return EXIT_OK if int(code) == 0 else EXIT_GENERIC


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``codegenie-eval`` console script. Output piped into a reader that
    stops early (``| head``) ends the command quietly, as other Unix tools do."""
    try:
        try:
            code = _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # the reader is gone: point stdout at /dev/null so the interpreter's final flush
        # does not raise again, and exit as a process killed by SIGPIPE would
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run" and not {"-h", "--help"} & set(argv[1:2]):
        # everything after `run` belongs to pytest, options included
        return cmd_run(argparse.Namespace(pytest_args=argv[1:]))
    args = _parser().parse_args(argv)
    _fill_from_project(args)
    variable = getattr(args, "chain_key_env", None)
    if variable:
        from pytest_codegenie_eval.store.audit import chain_key, key_from_environment

        try:
            key = key_from_environment(variable)
        except ValueError as exc:
            print(f"codegenie-eval {args.command}: --chain-key-env: {exc}", file=sys.stderr)
            return EXIT_GENERIC
        with chain_key(key):
            return _dispatch(args)
    return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    handlers = {
        "run": cmd_run,
        "verify": cmd_verify,
        "digests": cmd_digests,
        "repair": cmd_repair,
        "compare": cmd_compare,
        "transcripts": cmd_transcripts,
        "plan": cmd_plan,
        "init": cmd_init,
        "merge": cmd_merge,
        "report": cmd_report,
        "promote-verdict": cmd_promote_verdict,
    }
    return handlers[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
