"""How the command talks to its measuring processes.

A task is a JSON object on the command line of ``python -m npsegnet.bench
--worker TASK``; the child prints its result as one JSON line after
:data:`RESULT_MARK`.
"""

from __future__ import annotations

import json
import sys

RESULT_MARK = "NPSEGNET-BENCH-RESULT "


def worker_command(task: dict) -> list[str]:
    """The command line of a child process that carries out ``task``."""
    return [sys.executable, "-m", "npsegnet.bench", "--worker", json.dumps(task)]


def _parse_result(proc) -> dict:
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    return {"error": f"process exited with {proc.returncode}: {tail}"}
