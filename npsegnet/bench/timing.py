"""Timing protocol and the two probes of what the machine can do at best.

* :func:`time_it`: warm-up runs, then timed runs of one callable;
* **SGEMM probe**: ``np.matmul`` of two large float32 matrices, the rate
  (GFLOP/s) a compute-bound row is compared with;
* **copy probe**: a large float32 array copied by ``threads`` threads, the
  bandwidth (GB/s, bytes read + written) a memory-bound row is compared with.
"""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def time_it(fn, setup=None, warmup: int = 1, repeat: int = 5) -> list[float]:
    """Run ``setup(); fn()`` ``warmup`` times untimed, then ``repeat`` timed runs.

    Only ``fn`` is timed; ``setup`` prepares what it consumes (for example a
    forward pass whose cache a backward pass reads). Returns the ``repeat``
    wall-clock times in seconds.
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(times: list[float]) -> dict:
    """Median, minimum and all times (seconds) of one measurement."""
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": [float(t) for t in times],
    }


def probe_sgemm(n: int = 4096, repeat: int = 3) -> dict:
    """Rate of ``np.matmul`` on ``n x n`` float32 matrices (GFLOP/s)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    times = time_it(lambda: np.matmul(a, b, out=c), warmup=1, repeat=repeat)
    flops = 2.0 * n**3
    return {
        "n": n,
        "flops": flops,
        **summarize(times),
        "gflops": flops / min(times) / 1e9,
    }


def probe_torch_sgemm(torch, n: int = 4096, repeat: int = 3) -> dict:
    """Rate of ``torch.mm`` on ``n x n`` float32 matrices, for comparison."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    times = time_it(lambda: torch.mm(a, b, out=c), warmup=1, repeat=repeat)
    return {"n": n, **summarize(times), "gflops": 2.0 * n**3 / min(times) / 1e9}


def probe_copy(megabytes: int = 256, threads: int = 2, repeat: int = 5) -> dict:
    """Memory-copy bandwidth (GB/s, bytes read + written) of one and ``threads``.

    The threaded copy splits the array into ``threads`` contiguous chunks that
    ``np.copyto`` copies concurrently (it releases the GIL). The array is far
    larger than the last-level cache, so the copy runs from memory.
    """
    import numpy as np

    count = megabytes * 2**20 // 4
    src = np.ones(count, dtype=np.float32)
    dst = np.zeros_like(src)
    moved = 2.0 * src.nbytes
    single = time_it(lambda: np.copyto(dst, src), warmup=1, repeat=repeat)
    bounds = np.linspace(0, count, threads + 1).astype(np.int64)
    chunks = [
        (dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def threaded():
            list(pool.map(lambda pair: np.copyto(*pair), chunks))

        multi = time_it(threaded, warmup=1, repeat=repeat)
    gbps_single = moved / min(single) / 1e9
    gbps_multi = moved / min(multi) / 1e9
    return {
        "bytes": moved,
        "threads": threads,
        "single_thread": {**summarize(single), "gbps": gbps_single},
        "threaded": {**summarize(multi), "gbps": gbps_multi},
        "gbps": max(gbps_single, gbps_multi),
    }


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _fmt_time(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"
