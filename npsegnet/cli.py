"""The ``npsegnet`` command line: one subcommand per module.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only
when their command runs, so ``npsegnet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "train": ("npsegnet.train", "train SegNet-Basic or SegNet"),
    "evaluate": ("npsegnet.evaluate", "evaluate a checkpoint: G, C, mIoU, BF"),
    "predict": ("npsegnet.predict", "write colour-coded label PNGs for images"),
    "balance": (
        "npsegnet.balance",
        "trade C against G: undo part of the class weighting in the bias",
    ),
    "bench": ("npsegnet.bench", "time npsegnet against PyTorch in one run"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported to add its options."""
    parser = argparse.ArgumentParser(
        prog="npsegnet", description="SegNet in NumPy + Numba."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``npsegnet`` and ``python -m npsegnet``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)
