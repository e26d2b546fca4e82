"""Time to first result of a new process: launch, import, build, first forward."""

from __future__ import annotations

import os
import subprocess
import time

from .machine import _import_torch, thread_env
from .protocol import _parse_result, worker_command


def _startup_main(framework: str, shape: tuple, threads: int) -> dict:
    """Body of the time-to-first-result process: import, build, first forward."""
    t_python = time.time()
    import numpy as np

    bridge_s = 0.0
    if framework == "npsegnet":
        from npsegnet.models import build_model

        t_import = time.time()
        model = build_model("segnet-basic").eval()
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        y = model.forward(x)
        t_done = time.time()
        model.forward(x)  # again: what the first one spent beyond computing
    else:
        torch = _import_torch()
        torch.set_num_threads(threads)
        t_import = time.time()
        # The twin is built from npsegnet's model by the bridge; importing
        # npsegnet and copying its weights is not PyTorch's work, so the
        # clock leaves it out.
        from npsegnet.models import build_model, torch_module

        model = torch_module(build_model("segnet-basic")).eval()
        bridge_s = time.time() - t_import
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        with torch.inference_mode():
            y = model(torch.from_numpy(x))
            t_done = time.time()
            model(torch.from_numpy(x))
    return {
        "t_python": t_python,
        "t_import": t_import,
        "t_done": t_done,
        "t_second": time.time(),
        "out_shape": list(y.shape),
        "bridge_s": bridge_s,
    }


def measure_startup(framework: str, shape, threads: int, cache_dir=None) -> dict:
    """Time to first result of a new process: launch, import, first forward.

    The clock starts before the interpreter is launched and stops when the
    forward pass of SegNet-Basic (eval mode) on ``shape`` has returned.
    PyTorch's twin is built by the bridge from npsegnet's model; that time is
    not counted. ``cache_dir`` points ``NUMBA_CACHE_DIR`` at a given directory (an empty
    one for a cold start).
    """
    env = {**os.environ, **thread_env(threads)}
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    task = {"kind": "startup", "framework": framework, "shape": list(shape)}
    task["threads"] = threads
    t0 = time.time()
    proc = subprocess.run(worker_command(task), env=env, capture_output=True, text=True)
    out = _parse_result(proc)
    if "error" in out:
        return out
    bridge = out.get("bridge_s", 0.0)
    total = out["t_done"] - t0 - bridge
    return {
        "median_s": total,
        "min_s": total,
        "times_s": [total],
        "interpreter_s": out["t_python"] - t0,
        "import_s": out["t_import"] - out["t_python"],
        "first_forward_s": out["t_done"] - out["t_import"] - bridge,
        # the same forward once more in that process: the difference is the
        # one-off cost of the first (kernel loading or compiling, allocation)
        "second_forward_s": out["t_second"] - out["t_done"],
    }
