"""Time max pooling / unpooling (npsegnet's Numba kernels vs PyTorch) on one shape.

These ops do almost no arithmetic, so they are judged against memory: the
script first measures a memory-copy probe (``np.copyto`` of a large float32
array, bytes read + written per second) and then reports each op's
effective bandwidth (bytes of its arrays read + written, per second) as a
share of that probe. PyTorch runs with ``torch.set_num_threads(2)``.

Usage::

    python benchmarks/pool_timing.py [--shape 4 64 360 480] [--reps 7]

Not a test: it takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from npsegnet.kernels import pool as K


def median_ms(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=4, default=[4, 64, 360, 480])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    reps = max(5, args.reps)
    N, C, H, W = args.shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)

    # memory-copy probe
    src = np.ones(x.size, dtype=np.float32)
    dst = np.empty_like(src)
    copy_ms = median_ms(lambda: np.copyto(dst, src), reps)
    copy_gbs = 2 * src.nbytes / copy_ms / 1e6
    print(
        f"memory-copy probe: np.copyto of {src.nbytes / 1e6:.0f} MB float32: "
        f"{copy_ms:.1f} ms, {copy_gbs:.1f} GB/s (read + written)"
    )

    y, idx = K.maxpool2d_forward(x, 2, 2)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dxu = rng.standard_normal(x.shape, dtype=np.float32)
    fwd_bytes = x.nbytes + y.nbytes + idx.nbytes
    ops = {
        # name: (npsegnet public function, bytes read + written)
        "maxpool fwd": (lambda: K.maxpool2d_forward(x, 2, 2), fwd_bytes),
        "maxpool bwd": (lambda: K.maxpool2d_backward(dy, idx, x.shape), fwd_bytes),
        "unpool fwd": (lambda: K.maxunpool2d_forward(y, idx, (H, W)), fwd_bytes),
        "unpool bwd": (lambda: K.maxunpool2d_backward(dxu, idx), fwd_bytes),
    }
    ours = {name: median_ms(fn, reps) for name, (fn, _) in ops.items()}

    # the same loops writing into preallocated outputs: the difference is the
    # cost of fresh output memory (the kernel zero-fills new pages on first touch)
    out_y, out_i = np.empty_like(y), np.empty_like(idx)
    out_x = np.empty_like(x)
    bad = np.full(N * C, -1, dtype=np.int64)
    zero = np.float32(0)
    loops = {
        "maxpool fwd": lambda: K._maxpool2d_fwd(x, 2, 2, 2, 2, out_y, out_i),
        "maxpool bwd": lambda: K._scatter(dy, idx, out_x, True, zero, bad),
        "unpool fwd": lambda: K._scatter(y, idx, out_x, False, zero, bad),
        "unpool bwd": lambda: K._gather(
            dxu.reshape(N * C, -1),
            idx.reshape(N * C, -1),
            out_y.reshape(N * C, -1),
            bad,
        ),
    }
    loop_ms = {name: median_ms(fn, reps) for name, fn in loops.items()}

    theirs = {}
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("torch not installed: PyTorch columns left empty")
    else:
        torch.set_num_threads(2)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty, tidx = F.max_pool2d(tx, 2, 2, return_indices=True)
        tdy = torch.from_numpy(dy)
        tyd = ty.detach().requires_grad_(True)
        tu = F.max_unpool2d(tyd, tidx, 2, 2, output_size=(H, W))
        tdu = torch.from_numpy(dxu)
        with torch.no_grad():
            theirs["maxpool fwd"] = median_ms(
                lambda: F.max_pool2d(tx, 2, 2, return_indices=True), reps
            )
            theirs["unpool fwd"] = median_ms(
                lambda: F.max_unpool2d(tyd, tidx, 2, 2, output_size=(H, W)), reps
            )
        theirs["maxpool bwd"] = median_ms(
            lambda: torch.autograd.grad(ty, tx, tdy, retain_graph=True), reps
        )
        theirs["unpool bwd"] = median_ms(
            lambda: torch.autograd.grad(tu, tyd, tdu, retain_graph=True), reps
        )

    print(f"\nshape {tuple(args.shape)} float32, 2x2 stride 2, median of {reps} reps")
    head = (
        f"{'op':<12} {'MB r+w':>7} {'npsegnet ms':>12} {'GB/s':>6} {'% copy':>7}"
        f" {'torch ms':>9} {'GB/s':>6} {'% copy':>7} {'ours/torch':>10}"
        f" {'loop-only ms':>13} {'% copy':>7}"
    )
    print(head)
    print("-" * len(head))
    for name, (_, nbytes) in ops.items():
        ms = ours[name]
        gbs = nbytes / ms / 1e6
        row = (
            f"{name:<12} {nbytes / 1e6:>7.0f} {ms:>12.1f} {gbs:>6.1f} "
            f"{100 * gbs / copy_gbs:>6.0f}%"
        )
        if name in theirs:
            tms = theirs[name]
            tgbs = nbytes / tms / 1e6
            row += (
                f" {tms:>9.1f} {tgbs:>6.1f} {100 * tgbs / copy_gbs:>6.0f}%"
                f" {ms / tms:>10.2f}"
            )
        else:
            row += " " * 36
        lms = loop_ms[name]
        row += f" {lms:>13.1f} {100 * nbytes / lms / 1e6 / copy_gbs:>6.0f}%"
        print(row)
    print(
        "\nloop-only: the same Numba loops writing into preallocated outputs "
        "(no fresh pages to fault in)"
    )


if __name__ == "__main__":
    main()
