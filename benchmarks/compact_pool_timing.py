"""Time 2x2 stride-2 pooling with int64 indices against 2-bit compact indices.

For each shape, the four ops (pool forward, pool backward, unpool forward,
unpool backward) of :mod:`npsegnet.kernels.pool` (int64 flat indices) and
:mod:`npsegnet.kernels.compact_pool` (a ``CompactIndices`` store), float32,
with the median time of each, their ratio, and the bytes of the indices each
path keeps. The compact path writes a quarter of a byte per window where the
int64 path writes eight, and reads as little back.

Usage::

    python benchmarks/compact_pool_timing.py [--shapes 4x64x360x480 4x64x180x240]
                                             [--reps 7]

Not a test: it takes about half a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from npsegnet.kernels import compact_pool as CP
from npsegnet.kernels import pool as P


def median_ms(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def parse_shape(text):
    shape = tuple(int(v) for v in text.lower().split("x"))
    if len(shape) != 4:
        raise argparse.ArgumentTypeError(f"expected NxCxHxW, got {text!r}")
    return shape


def time_shape(shape, reps, rng):
    N, C, H, W = shape
    x = rng.standard_normal(shape, dtype=np.float32)
    y, idx = P.maxpool2d_forward(x, 2, 2)
    _, store = CP.maxpool2d_forward_compact(x)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    du = rng.standard_normal(x.shape, dtype=np.float32)
    ops = {
        # name: (int64 path, compact path)
        "pool fwd": (
            lambda: P.maxpool2d_forward(x, 2, 2),
            lambda: CP.maxpool2d_forward_compact(x),
        ),
        "pool bwd": (
            lambda: P.maxpool2d_backward(dy, idx, x.shape),
            lambda: CP.maxpool2d_backward_compact(dy, store),
        ),
        "unpool fwd": (
            lambda: P.maxunpool2d_forward(y, idx, (H, W)),
            lambda: CP.maxunpool2d_forward_compact(y, store),
        ),
        "unpool bwd": (
            lambda: P.maxunpool2d_backward(du, idx),
            lambda: CP.maxunpool2d_backward_compact(du, store),
        ),
    }
    print(
        f"\nshape {shape} float32, median of {reps} reps; indices kept: "
        f"int64 {idx.nbytes / 1e6:.2f} MB, compact {store.nbytes / 1e6:.3f} MB "
        f"({idx.nbytes / store.nbytes:.0f}x less)"
    )
    head = f"{'op':<11} {'int64 ms':>9} {'compact ms':>11} {'compact/int64':>14}"
    print(head)
    print("-" * len(head))
    for name, (flat, compact) in ops.items():
        a = median_ms(flat, reps)
        b = median_ms(compact, reps)
        print(f"{name:<11} {a:>9.1f} {b:>11.1f} {b / a:>14.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shapes",
        type=parse_shape,
        nargs="+",
        default=[(4, 64, 360, 480), (4, 64, 180, 240)],
        help="NxCxHxW shapes (default: SegNet's first two stages at 360x480)",
    )
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    for shape in args.shapes:
        time_shape(shape, max(1, args.reps), rng)


if __name__ == "__main__":
    main()
