"""One measuring task, carried out in a child process (or in this one).

Each task is a probe, the layer rows of one framework, one whole-model row
of one framework, or a startup measurement. A child process is started with
every thread pool sized by its environment (:func:`~.machine.thread_env`),
which is the only reliable way to size OpenBLAS's pool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .layer_rows import measure_layers
from .machine import _import_torch, set_threads, software_info, thread_env, torch_info
from .model_rows import measure_model
from .protocol import RESULT_MARK, _parse_result, worker_command
from .rows import RowSpec
from .startup import _startup_main
from .timing import probe_copy, probe_sgemm, probe_torch_sgemm


def _execute(task: dict) -> dict:
    """Carry out one task (in whatever process calls this)."""
    kind = task["kind"]
    framework = task.get("framework", "npsegnet")
    if kind == "startup":  # first, before anything is imported
        return _startup_main(framework, tuple(task["shape"]), task["threads"])
    if task.get("mallopt"):
        # --mallopt: the same process-wide allocator setting for either framework
        from npsegnet.config import keep_freed_memory

        keep_freed_memory()
    if framework == "npsegnet" and kind != "torch_probe":
        import numba  # noqa: F401  (so that set_threads sizes its pool)

        import npsegnet.layers  # noqa: F401
    torch = _import_torch() if framework == "pytorch" else None
    threads = set_threads(task["threads"], torch)
    specs = [RowSpec(**{**s, "shape": tuple(s["shape"])}) for s in task.get("rows", [])]
    if kind == "probe":
        return {
            "threads": threads,
            "sgemm": probe_sgemm(task["sgemm_n"], task["probe_repeat"]),
            "copy": probe_copy(task["copy_mb"], task["threads"], task["probe_repeat"]),
            "software": software_info(),
        }
    if kind == "torch_probe":
        return {
            "threads": threads,
            "sgemm": probe_torch_sgemm(torch, task["sgemm_n"], task["probe_repeat"]),
            "software": torch_info(torch),
        }
    if kind == "layers":
        rows = measure_layers(framework, specs, task["warmup"], task["repeat"])
        out = {"threads": threads, "rows": rows}
        if framework == "npsegnet":
            try:  # known only once a parallel kernel has run
                out["numba_threading_layer"] = sys.modules["numba"].threading_layer()
            except ValueError:
                pass
        return out
    if kind == "model":
        row = measure_model(framework, specs[0], task["warmup"], task["repeat"])
        return {"threads": threads, "rows": {specs[0].name: row}}
    raise ValueError(f"unknown task {kind!r}")


def _run_task(task: dict, in_process: bool) -> dict:
    """Run ``task`` here, or in a child process with the thread variables set."""
    if in_process:
        try:
            return _execute(task)
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
    env = {**os.environ, **thread_env(task["threads"])}
    proc = subprocess.run(worker_command(task), env=env, capture_output=True, text=True)
    sys.stderr.write(proc.stderr if proc.returncode == 0 else "")
    return _parse_result(proc)


def _worker_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--worker":
        print("usage: python -m npsegnet.bench --worker TASK_JSON", file=sys.stderr)
        return 2
    result = _execute(json.loads(argv[1]))
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0
