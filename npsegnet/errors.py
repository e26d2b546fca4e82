"""What the commands share about failing: one error class and one guard.

:class:`UsageError` is bad input from the command line (a wrong option, a
missing folder). :func:`guarded` runs a command and turns the *expected*
failures (bad options, missing or damaged files, data that does not fit) into
one line on stderr; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

__all__ = ["EXPECTED_ERRORS", "UsageError", "guarded"]


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


#: The failures bad input can cause: a wrong option (:class:`UsageError`), a
#: missing file, an unreadable or damaged one (``OSError``, ``ValueError``,
#: which :class:`npsegnet.checkpoint.CheckpointError` and
#: :class:`npsegnet.memory.InsufficientMemory` derive from).
EXPECTED_ERRORS = (UsageError, FileNotFoundError, ValueError, OSError)


def guarded(func, args) -> int:
    """Run a command; turn expected failures into one line on stderr.

    Bad input (a missing file, an unreadable image, a wrong option) ends with
    ``npsegnet: error: ...`` and exit code 1 (2 for usage errors) instead of a
    traceback. A ``TypeError``, ``KeyError`` or any other exception is a
    programming error and propagates with its traceback. Set
    ``NPSEGNET_DEBUG=1`` to see the traceback of an expected failure too.

    Parameters
    ----------
    func : callable
        ``func(args) -> int``, the body of a command.
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    int
        ``func``'s exit code, 1 after an expected failure, 2 after a
        :class:`UsageError`.
    """
    try:
        return func(args)
    except EXPECTED_ERRORS as exc:
        if os.environ.get("NPSEGNET_DEBUG"):
            raise
        print(f"npsegnet: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
