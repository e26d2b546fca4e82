"""Time Conv2D's FFT path against its GEMM path and PyTorch, per tile size.

Not a test: run it by hand on an idle machine (both BLAS kernels as set free
for benchmarks in the developer notes),

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/conv_fft_timing.py N C F H W K [T ...]

e.g. ``4 64 64 360 480 7 16 32 48``. It prints the median (of ``--reps``)
forward and backward (dx + dw + db) times of the GEMM path, of
``torch.nn.functional.conv2d`` with autograd (``torch.set_num_threads`` as
npsegnet's threads), and of the FFT path at each tile size ``T`` (default:
the tile ``fft_tile_size`` picks), with the ratios ``gemm / fft`` and
``torch / fft`` measured in this run, and the FFT's float32 error against
the GEMM path in float64 (max |delta| / max |ref|).
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
from conv_timing import timeit  # benchmarks/ is the script's folder


def median_time(fn, reps):
    return timeit(fn, reps)[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", type=int, nargs=6, metavar="N C F H W K")
    p.add_argument("tiles", type=int, nargs="*", metavar="T")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    from npsegnet.config import set_threads
    from npsegnet.kernels import conv as direct
    from npsegnet.kernels import conv_fft as cf

    set_threads(args.threads)
    N, C, F, H, W, k = args.shape
    pad = k // 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = (rng.standard_normal((F, C, k, k)) * np.sqrt(2 / (C * k * k))).astype(
        np.float32
    )
    b = np.zeros(F, np.float32)
    d = rng.standard_normal((N, F, H, W), dtype=np.float32)
    cpu = next(
        (
            ln.split(":")[1].strip()
            for ln in open("/proc/cpuinfo")
            if "model name" in ln
        ),
        platform.processor(),
    )
    print(f"{N}x{C}x{H}x{W} {k}x{k} -> {F}, {args.threads} threads, {cpu}")
    g_f = median_time(lambda: direct.conv2d_forward(x, w, b, pad), args.reps)
    g_b = median_time(lambda: direct.conv2d_backward(d, x, w, pad), args.reps)
    print(f"gemm   fwd {g_f * 1e3:8.1f} ms  bwd {g_b * 1e3:8.1f} ms")
    t_f = t_b = None
    try:
        import torch

        torch.set_num_threads(args.threads)
        tx = torch.from_numpy(x).requires_grad_(True)
        tw = torch.from_numpy(w).requires_grad_(True)
        tb = torch.from_numpy(b).requires_grad_(True)
        td = torch.from_numpy(d)

        def t_fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(tx, tw, tb, padding=pad)

        def t_bwd():
            out = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
            torch.autograd.grad(out, (tx, tw, tb), td)

        t_f = median_time(t_fwd, args.reps)
        t_b = median_time(t_bwd, args.reps) - t_f  # autograd ran the forward too
        print(f"torch  fwd {t_f * 1e3:8.1f} ms  bwd {t_b * 1e3:8.1f} ms")
    except ImportError:
        print("torch: not installed")
    ref = direct.conv2d_forward(*(a.astype(np.float64) for a in (x, w, b)), pad)
    for T in args.tiles or [None]:
        T = T or cf.fft_tile_size(k, k, H, W)

        def fwd(T=T):
            return cf.conv2d_fft_forward(x, w, b, pad, tile=T)

        def bwd(T=T):
            return cf.conv2d_fft_backward(d, x, w, pad, tile=T)

        f_f = median_time(fwd, args.reps)
        f_b = median_time(bwd, args.reps)
        err = np.abs(fwd() - ref).max()
        line = (
            f"fft T={T:<3d} fwd {f_f * 1e3:8.1f} ms ({g_f / f_f:4.2f}x gemm"
            + (f", {t_f / f_f:4.2f}x torch" if t_f else "")
            + f")  bwd {f_b * 1e3:8.1f} ms ({g_b / f_b:4.2f}x gemm"
            + (f", {t_b / f_b:4.2f}x torch" if t_b else "")
            + f")  err {err / np.abs(ref).max():.1e}"
        )
        print(line)


if __name__ == "__main__":
    main()
