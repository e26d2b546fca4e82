"""Time npsegnet's convolution against the SGEMM peak and against PyTorch.

Not a test: run it by hand on an idle machine,

    python benchmarks/conv_timing.py [--reps 7] [--quick]

It prints (a) the float32 GEMM rate of ``np.matmul`` on 4096 x 4096 matrices
(the ceiling for any GEMM-based convolution here), then for each SegNet-shaped
convolution the forward and backward times of npsegnet and of PyTorch
(``torch.nn.functional.conv2d`` and autograd, ``torch.set_num_threads(2)``),
with GFLOP/s and the percentage of the GEMM rate. Times are medians (and
minima) of ``--reps`` runs after a warm-up round; the runs of npsegnet and
torch alternate (with a short rest in between), and "vs torch" is the median
of the per-run ratios, which stays meaningful when other processes load the
machine. Backward counts dx + dweight +
dbias; the first layer (3 input channels) is timed without dx, as a network
needs none there.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial

import numpy as np

REST = 0.3  # seconds of rest before each timed run

CASES = [
    # name, (N, C_in, H, W), C_out, k, need_dx
    ("7x7 64->64 SegNet-Basic", (1, 64, 180, 240), 64, 7, True),
    ("7x7 64->64 SegNet-Basic dec1, batch 4", (4, 64, 360, 480), 64, 7, True),
    ("3x3 64->64 SegNet enc1", (1, 64, 360, 480), 64, 3, True),
    ("7x7 3->64 first layer", (4, 3, 180, 240), 64, 7, False),
    ("1x1 64->11 classifier", (4, 64, 180, 240), 11, 1, True),
]


def timeit(fn, reps):
    """Median and minimum wall time of ``fn()`` over ``reps`` runs after a warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(min(times))


def timed(fn):
    """Wrap ``fn`` so that calling it returns its wall time."""

    def run():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def ratio(times, pas, impl):
    """Median over reps of torch's time / ``impl``'s time."""
    return float(np.median(np.array(times[pas, "torch"]) / np.array(times[pas, impl])))


def gemm_peak(reps):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 4096), dtype=np.float32)
    b = rng.standard_normal((4096, 4096), dtype=np.float32)
    c = np.empty_like(a)
    med, best = timeit(lambda: np.matmul(a, b, out=c), reps)
    flops = 2 * 4096**3
    return flops / med / 1e9, flops / best / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="only the first case")
    args = parser.parse_args(argv)

    import numba
    import torch

    from npsegnet.kernels.conv import conv2d_backward, conv2d_forward

    torch.set_num_threads(2)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}, numba {numba.__version__} "
        f"({numba.config.THREADING_LAYER} threading layer requested), "
        f"torch {torch.__version__}, reps {args.reps}"
    )
    peak, peak_best = gemm_peak(args.reps)
    print(f"(a) np.matmul 4096^2 float32: {peak:.0f} GFLOP/s (best {peak_best:.0f})")
    print()
    head = (
        f"{'case':<31}{'pass':<5}{'impl':<9}{'median ms':>10}{'min ms':>8}"
        f"{'GFLOP/s':>9}{'% peak':>8}{'vs torch':>10}"
    )
    print(head)
    print("-" * len(head))
    rng = np.random.default_rng(0)
    cases = CASES[:1] if args.quick else CASES
    for name, shape, F, k, need_dx in cases:
        N, C, H, W = shape
        p = k // 2
        x = rng.standard_normal(shape, dtype=np.float32)
        w = (rng.standard_normal((F, C, k, k)) * np.sqrt(2 / (C * k * k))).astype(
            np.float32
        )
        b = np.zeros(F, np.float32)
        dout = rng.standard_normal((N, F, H, W), dtype=np.float32)
        flops = 2 * N * F * C * k * k * H * W
        bflops = flops * (2 if need_dx else 1)

        xt = torch.from_numpy(x).requires_grad_(need_dx)
        wt = torch.from_numpy(w).requires_grad_(True)
        bt = torch.from_numpy(b).requires_grad_(True)
        gt = torch.from_numpy(dout)

        def torch_fwd(xt=xt, wt=wt, bt=bt, p=p):
            with torch.no_grad():
                t0 = time.perf_counter()
                torch.nn.functional.conv2d(xt, wt, bt, padding=p)
                return time.perf_counter() - t0

        def torch_bwd(xt=xt, wt=wt, bt=bt, gt=gt, p=p):
            # time backward alone: the graph is built outside the timed region
            out = torch.nn.functional.conv2d(xt, wt, bt, padding=p)
            t0 = time.perf_counter()
            out.backward(gt)
            elapsed = time.perf_counter() - t0
            for t in (xt, wt, bt):
                t.grad = None
            return elapsed

        # Interleave the four measurements rep by rep, so that load from other
        # processes hits npsegnet and torch alike; the ratio column is the
        # median of the per-rep ratios.
        runs = {
            ("fwd", "npsegnet"): timed(partial(conv2d_forward, x, w, b, p)),
            ("fwd", "torch"): torch_fwd,
            ("bwd", "npsegnet"): timed(
                partial(conv2d_backward, dout, x, w, p, need_dx)
            ),
            ("bwd", "torch"): torch_bwd,
        }
        times = {key: [] for key in runs}
        for rep in range(args.reps + 1):
            for key, fn in runs.items():
                # Let the idle threads of the previous run go to sleep first:
                # torch's OpenMP and OpenBLAS both busy-wait after a call, and a
                # spinning thread of one library starves the other on 2 cores.
                time.sleep(REST)
                t = fn()
                if rep:  # the first round is the warm-up
                    times[key].append(t)
        rows = [
            (pas, impl, (float(np.median(ts)), float(min(ts))), ratio(times, pas, impl))
            for (pas, impl), ts in times.items()
        ]
        label = name + ("" if need_dx else " (no dx)")
        for i, (pas, impl, (med, best), speedup) in enumerate(rows):
            fl = flops if pas == "fwd" else bflops
            rate = fl / med / 1e9
            print(
                f"{label if i == 0 else '':<31}{pas:<5}{impl:<9}{med * 1e3:>10.1f}"
                f"{best * 1e3:>8.1f}{rate:>9.0f}{100 * rate / peak:>7.0f}%"
                f"{speedup:>9.2f}x"
            )
    print()
    print("vs torch = torch time / this time (> 1: faster than torch)")
    print(f"Numba threading layer used: {numba.threading_layer()}")


if __name__ == "__main__":
    main()
