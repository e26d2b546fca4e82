"""The whole benchmark: probes, layer rows, model rows, startup, one report."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict

from .goals import evaluate_goals, finish_row
from .machine import (
    _loadavg,
    _restore_thread_counts,
    _thread_counts,
    machine_info,
    thread_env,
)
from .rows import SIZES, build_rows, select_rows
from .settings import blas_warnings, numpy_blas, process_settings
from .startup import measure_startup
from .timing import _fmt_time, _log
from .worker import _run_task

SCHEMA = "npsegnet-bench/1"

DEFAULT_REPEAT = {"full": (5, 3), "quick": (3, 2), "tiny": (1, 1)}


def run_benchmark(
    size: str = "full",
    threads: int = 2,
    repeat: int | None = None,
    model_repeat: int | None = None,
    warmup: int = 1,
    only: str | None = None,
    use_torch: bool = True,
    in_process: bool = False,
    cold_start: bool | None = None,
    mallopt: bool = False,
) -> dict:
    """Measure every selected row for npsegnet (and PyTorch); return the report.

    Parameters
    ----------
    size : {"full", "quick", "tiny"}
        The shapes (see :data:`SIZES`): issue 5's, a subset for a quick look,
        or toy shapes for the tests.
    threads : int
        Threads of every pool (OpenBLAS, Numba, PyTorch/OpenMP).
    repeat, model_repeat : int, optional
        Timed runs of each layer row and each whole-model row (defaults by
        size: 5/3 full, 3/2 quick, 1/1 tiny); the median is reported.
    warmup : int
        Untimed runs before the timed ones (the first also compiles).
    only : str, optional
        Regular expression; only the rows whose name matches run.
    use_torch : bool
        Time PyTorch too, if it is installed.
    in_process : bool
        Measure in this process (the tests) instead of child processes; the
        memory figures then mix the rows and the thread counts are set at run
        time.
    cold_start : bool, optional
        Include the cold time-to-first-result row (default: full size only).
    mallopt : bool
        Apply glibc's ``mallopt`` setting of
        :func:`npsegnet.config.keep_freed_memory` in every measuring process,
        for both frameworks (default: in none). In-process, it is applied to
        this process and stays.

    Returns
    -------
    dict
        The JSON report: ``rows``, ``probes``, ``goals``, ``machine``, ...
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    for name, value in (("threads", threads), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for name, value in (("repeat", repeat), ("model_repeat", model_repeat)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    rep_default, model_rep_default = DEFAULT_REPEAT[size]
    repeat = repeat or rep_default
    model_repeat = model_repeat or min(repeat, model_rep_default)
    if cold_start is None:
        cold_start = size == "full"
    specs = select_rows(build_rows(size, cold_start=cold_start), only)
    notes = []
    if use_torch:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            use_torch = False
            notes.append(
                "PyTorch is not installed: npsegnet only "
                "(pip install torch==2.13.0 for the side-by-side columns)"
            )
    else:
        notes.append("PyTorch columns skipped (--no-torch)")
    frameworks = ["npsegnet"] + (["pytorch"] if use_torch else [])
    saved = _thread_counts() if in_process else None
    try:
        return _run_benchmark(
            size, threads, repeat, model_repeat, warmup, only, specs, frameworks,
            notes, in_process, use_torch, bool(mallopt),
        )  # fmt: skip
    finally:
        if saved is not None:  # leave the caller's pools as they were
            _restore_thread_counts(saved)


def _run_benchmark(
    size, threads, repeat, model_repeat, warmup, only, specs, frameworks, notes,
    in_process, use_torch, mallopt,
) -> dict:  # fmt: skip
    sz = SIZES[size]
    started = time.time()
    load_start = _loadavg()
    base = {"threads": threads, "warmup": warmup, "mallopt": mallopt}
    probe_task = {
        **base,
        "kind": "probe",
        "sgemm_n": sz.sgemm_n,
        "copy_mb": sz.copy_mb,
        "probe_repeat": 3 if size != "tiny" else 1,
    }
    _log(f"probes: SGEMM {sz.sgemm_n}^2 float32, copy {sz.copy_mb} MB")
    probe_first = _run_task(probe_task, in_process)
    tasks = []  # (task, row names); in the order they run
    if use_torch:
        tasks.append(
            ({**probe_task, "kind": "torch_probe", "framework": "pytorch"}, [])
        )
    layer_specs = [asdict(s) for s in specs if s.group == "layer"]
    if layer_specs:
        for fw in frameworks:
            task = {**base, "kind": "layers", "framework": fw, "repeat": repeat}
            tasks.append(
                ({**task, "rows": layer_specs}, [s["name"] for s in layer_specs])
            )
    for spec in (s for s in specs if s.group == "model"):
        for fw in frameworks:
            task = {**base, "kind": "model", "framework": fw, "repeat": model_repeat}
            tasks.append(({**task, "rows": [asdict(spec)]}, [spec.name]))
    if in_process:
        # PyTorch's OpenMP threads keep spinning for a while after each of its
        # calls and would steal the cores from Numba's: npsegnet goes first.
        tasks.sort(key=lambda t: t[0].get("framework") == "pytorch")
    torch_probe = threading_layer = None
    results: dict[str, dict] = {s.name: {} for s in specs}
    for task, names in tasks:
        out = _run_task(task, in_process)
        if task["kind"] == "torch_probe":
            torch_probe = out
        if "numba_threading_layer" in out:
            threading_layer = out["numba_threading_layer"]
        for name in names:
            row = out.get("rows", {}).get(
                name, {"error": out.get("error", "no result")}
            )
            if in_process and "memory" in row:
                row["memory"]["isolated"] = False
            results[name][task["framework"]] = row
    startup = [s for s in specs if s.group == "startup"]
    if startup:
        cold = any(s.name == "startup.cold" for s in startup)
        with tempfile.TemporaryDirectory(prefix="npsegnet-numba-cache-") as tmp:
            # Cold: an empty Numba cache; warm: the cache the cold process
            # filled. Without the cold row, warm uses the usual cache, primed
            # by one untimed process (cheap when the kernels are cached; the
            # tests' tiny size skips it, for speed).
            cache = tmp if cold else None
            if not cold and size != "tiny":
                measure_startup("npsegnet", startup[0].shape, threads, cache)
            for spec in startup:
                for fw in frameworks:
                    m = measure_startup(
                        fw, spec.shape, threads, cache if fw == "npsegnet" else None
                    )
                    results[spec.name][fw] = m
                    _log(f"{spec.name:<13} {fw:<8} {_fmt_time(m.get('median_s'))}")
    probe_last = _run_task(probe_task, in_process) if size != "tiny" else None
    probes = _combine_probes(probe_first, probe_last, torch_probe)
    rows = [finish_row(spec, results[spec.name], probes, use_torch) for spec in specs]
    software = dict(probe_first.get("software", {}))
    if threading_layer:
        software["numba_threading_layer"] = threading_layer
    if torch_probe and "software" in torch_probe:
        software["pytorch"] = torch_probe["software"]
    # the environment the measuring processes saw (children get thread_env)
    env = dict(os.environ) if in_process else {**os.environ, **thread_env(threads)}
    machine = machine_info()
    core = (numpy_blas(software.get("threadpools")) or {}).get("kernel")
    core = core or software.get("blas", {}).get("core")
    report = {
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "duration_s": time.time() - started,
        "options": {
            "size": size,
            "threads": threads,
            "repeat": repeat,
            "model_repeat": model_repeat,
            "warmup": warmup,
            "only": only,
            "pytorch": use_torch,
            "in_process": in_process,
            "mallopt": mallopt,
        },
        "process": process_settings(env, threads, mallopt),
        "warnings": blas_warnings(env, machine.get("simd"), core),
        "machine": {
            **machine,
            "loadavg_start": load_start,
            "loadavg_end": _loadavg(),
        },
        "software": software,
        "threads_set": probe_first.get("threads"),
        "probes": probes,
        "rows": rows,
        "notes": notes,
    }
    report["goals"] = evaluate_goals(report)
    return report


def _combine_probes(first: dict, last: dict | None, torch_probe: dict | None) -> dict:
    """The peaks the rows are compared with: the better of two probes."""
    if "error" in first:
        return {"error": first["error"], "sgemm_gflops": None, "copy_gbps": None}
    runs = [first] + ([last] if last and "error" not in last else [])
    probes = {
        "sgemm": [r["sgemm"] for r in runs],
        "copy": [r["copy"] for r in runs],
        "sgemm_gflops": max(r["sgemm"]["gflops"] for r in runs),
        "copy_gbps": max(r["copy"]["gbps"] for r in runs),
    }
    if torch_probe and "sgemm" in torch_probe:
        probes["torch_sgemm"] = torch_probe["sgemm"]
    return probes
