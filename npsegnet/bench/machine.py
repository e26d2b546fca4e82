"""The machine a benchmark runs on: thread pools, memory, CPU and software.

Every pool is sized before a measurement: by environment variables before a
child process starts (:func:`thread_env`), or at run time in this process
(:func:`set_threads`: OpenBLAS through its own ``openblas_set_num_threads``
found with ``ctypes``, Numba, PyTorch).
"""

from __future__ import annotations

import os
import platform
import sys

from ..kernels._threads import _openblas_functions, _openblas_libs


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that size every thread pool before it starts."""
    t = str(threads)
    return {
        "OPENBLAS_NUM_THREADS": t,
        "OMP_NUM_THREADS": t,
        "MKL_NUM_THREADS": t,
        "NUMBA_NUM_THREADS": t,
    }


def _openblas_call(name: str, *args):
    """Call ``openblas_<name>`` in every loaded OpenBLAS; return the results."""
    import ctypes

    out = []
    for lib in _openblas_libs():
        for fn in _openblas_functions(lib, name):
            if name.startswith("get_config") or name.startswith("get_corename"):
                fn.restype = ctypes.c_char_p
            out.append(fn(*args))
    return out


def set_threads(threads: int, torch_module=None) -> dict:
    """Set every thread pool of this process to ``threads``; report what was set.

    NumPy's OpenBLAS is sized through its own ``openblas_set_num_threads``
    (found with ``ctypes``, as threadpoolctl does), Numba with
    :func:`npsegnet.config.set_threads` (at most ``NUMBA_NUM_THREADS``, fixed
    at start)
    and PyTorch with ``torch.set_num_threads`` when ``torch_module`` is given.
    """
    import ctypes

    report = {"requested": threads}
    _openblas_call("set_num_threads", ctypes.c_int(threads))
    got = _openblas_call("get_num_threads")
    report["openblas"] = got[0] if got else None
    if "numba" in sys.modules:
        import numba

        from npsegnet.config import set_threads as set_numba_threads

        set_numba_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        report["numba"] = numba.get_num_threads()
    if torch_module is not None:
        torch_module.set_num_threads(threads)
        report["torch"] = torch_module.get_num_threads()
    return report


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM), in MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _thread_counts() -> dict:
    """The current sizes of this process's OpenBLAS, Numba and PyTorch pools."""
    counts = {}
    got = _openblas_call("get_num_threads")
    if got:
        counts["openblas"] = got[0]
    if "numba" in sys.modules:
        counts["numba"] = sys.modules["numba"].get_num_threads()
    if "torch" in sys.modules:
        counts["torch"] = sys.modules["torch"].get_num_threads()
    return counts


def _restore_thread_counts(counts: dict) -> None:
    import ctypes

    if "openblas" in counts:
        _openblas_call("set_num_threads", ctypes.c_int(counts["openblas"]))
    if "numba" in counts:
        sys.modules["numba"].set_num_threads(counts["numba"])
    if "torch" in counts:
        sys.modules["torch"].set_num_threads(counts["torch"])


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _import_torch():
    import torch

    return torch


def machine_info() -> dict:
    """CPU model, core counts, OS and Python; no NumPy needed."""
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu == platform.machine():
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1]
    except OSError:
        pass
    simd = [f for f in ("avx512f", "avx2", "fma", "avx") if f in flags.split()]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "simd": simd,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def software_info() -> dict:
    """NumPy, Numba and BLAS of this process (call where they are imported)."""
    import numpy as np

    info = {"numpy": np.__version__}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = {
            "name": blas.get("name"),
            "version": blas.get("version"),
            "config": blas.get("openblas configuration"),
        }
    except Exception:  # show_config's layout is not a stable API
        info["blas"] = {}
    runtime = _openblas_call("get_config")
    core = _openblas_call("get_corename")
    if runtime:
        info["blas"]["runtime_config"] = runtime[0].decode()
    if core:
        info["blas"]["core"] = core[0].decode()
    if "numba" in sys.modules:
        import numba

        info["numba"] = numba.__version__
        info["numba_threading_layer"] = numba.config.THREADING_LAYER
    import npsegnet

    info["npsegnet"] = npsegnet.__version__
    info["threadpools"] = threadpools()
    return info


def threadpools() -> list[dict]:
    """threadpoolctl's view of this process's BLAS and OpenMP libraries
    (``architecture`` is OpenBLAS's kernel); empty without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "prefix", "version", "num_threads")
    keys += ("threading_layer", "architecture")
    return [{k: pool.get(k) for k in keys if k in pool} for pool in threadpool_info()]


def torch_info(torch) -> dict:
    """PyTorch's version, its BLAS, oneDNN and the kernel level it runs."""
    from .settings import torch_blas

    info = {"torch": torch.__version__, **torch_blas(torch.__config__.show())}
    info["mkldnn"] = bool(torch.backends.mkldnn.is_available())
    try:  # the level ATen dispatches to on this CPU (AVX2, AVX512, ...)
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        pass
    info["threadpools"] = threadpools()
    return info
