"""``npsegnet bench``: the command-line options and the command."""

from __future__ import annotations

import argparse
import json

from .run import run_benchmark
from .text import format_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``npsegnet bench``."""
    parser.add_argument(
        "--threads", type=int, default=2, help="threads of every pool (default 2)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per layer row, median reported (default 5; quick 3)",
    )
    parser.add_argument(
        "--model-repeat",
        type=int,
        default=None,
        help="timed runs per whole-model row (default 3; quick 2)",
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs before timing (default 1)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller shapes and fewer runs, no VGG row, no cold start (< 1 min)",
    )
    parser.add_argument(
        "--only", metavar="PATTERN", help="only rows whose name matches this regex"
    )
    parser.add_argument("--no-torch", action="store_true", help="time npsegnet alone")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process instead of one child process per framework "
        "and model row (memory figures are then not isolated)",
    )
    parser.add_argument(
        "--mallopt",
        action="store_true",
        help="apply glibc's mallopt (freed memory stays mapped; "
        "npsegnet.config.keep_freed_memory) in every measuring process, for "
        "both frameworks; off by default, and recorded in the report",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="toy shapes, one run each, in-process (for the tests)",
    )


def _command_line(args: argparse.Namespace) -> str:
    """The ``npsegnet bench`` command that reproduces ``args``."""
    words = ["npsegnet", "bench"]
    for flag in ("quick", "tiny", "no_torch", "in_process", "mallopt"):
        if getattr(args, flag, False):
            words.append("--" + flag.replace("_", "-"))
    for opt in ("threads", "repeat", "model_repeat", "warmup", "only", "json"):
        value = getattr(args, opt, None)
        if value is not None:
            shown = f"'{value}'" if opt == "only" else str(value)
            words += ["--" + opt.replace("_", "-"), shown]
    return " ".join(words)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the JSON; 1 if a row failed."""
    if args.tiny and args.quick:
        raise SystemExit("npsegnet bench: --tiny and --quick exclude each other")
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    try:
        report = run_benchmark(
            size=size,
            threads=args.threads,
            repeat=args.repeat,
            model_repeat=args.model_repeat,
            warmup=args.warmup,
            only=args.only,
            use_torch=not args.no_torch,
            in_process=args.in_process or args.tiny,
            mallopt=getattr(args, "mallopt", False),
        )
    except ValueError as exc:
        raise SystemExit(f"npsegnet bench: {exc}") from None
    report["command"] = _command_line(args)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"\nwrote {args.json}")
    failed = any(
        r[fw] and "error" in r[fw]
        for r in report["rows"]
        for fw in ("npsegnet", "pytorch")
    )
    return 1 if failed else 0
