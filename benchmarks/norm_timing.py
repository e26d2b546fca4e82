"""Timing of the memory-bound layers: batch-norm, ReLU, softmax cross-entropy.

Not a test. One run measures, on this machine:

* a memory-copy probe: ``np.copyto`` of a large float32 array, whose bytes read
  plus bytes written per second are the reference bandwidth;
* npsegnet vs PyTorch (2 threads) for batch-norm (training mode) forward and
  backward and ReLU forward and backward on (4, 64, 360, 480) float32 (the
  first SegNet stage at CamVid size, batch 4), and the loss forward + backward
  on (4, 11, 360, 480) with CamVid's class weights and ``ignore_index=11``.

Each line gives the median of ``--reps`` runs after a warm-up: ms, the GB/s of
the bytes our kernels move (passes counted below), that as a % of the copy
bandwidth, and PyTorch's time divided by ours (> 1: we are faster).

Usage: ``python benchmarks/norm_timing.py [--reps 7]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from npsegnet.kernels.batchnorm import batchnorm2d_backward, batchnorm2d_forward_train
from npsegnet.kernels.loss import softmax_cross_entropy_fused
from npsegnet.kernels.relu import relu_backward, relu_forward

CAMVID_WEIGHTS = np.array(
    [0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823]
    + [6.2478, 7.3614]
)


def median_ms(fn, reps):
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    reps = max(5, args.reps)

    import numba

    rng = np.random.default_rng(0)
    shape = (4, 64, 360, 480)
    x = rng.standard_normal(shape, dtype=np.float32)
    dout = rng.standard_normal(shape, dtype=np.float32)
    S = x.nbytes
    w = np.ones(64, np.float32)
    b = np.zeros(64, np.float32)

    copy_dst = np.empty_like(x)
    copy_ms = median_ms(lambda: np.copyto(copy_dst, x), reps)
    copy_gbs = 2 * S / copy_ms / 1e6

    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # pragma: no cover - the table then lacks the ratio
        torch = None

    rows = []

    def add(name, ours_ms, nbytes, torch_ms):
        gbs = nbytes / ours_ms / 1e6
        ratio = torch_ms / ours_ms if torch_ms else float("nan")
        rows.append((name, ours_ms, gbs, 100 * gbs / copy_gbs, torch_ms, ratio))

    # batch norm, training mode: fwd reads x twice (statistics, normalise) and
    # writes out; bwd reads dout and x twice (sums, write pass) and writes dx
    fwd = batchnorm2d_forward_train(x, w, b, 1e-5)
    bn_f = median_ms(lambda: batchnorm2d_forward_train(x, w, b, 1e-5), reps)
    bn_b = median_ms(lambda: batchnorm2d_backward(dout, x, fwd[1], fwd[3], w), reps)
    t_f = t_b = r_f = r_b = None
    if torch is not None:
        xt = torch.from_numpy(x).requires_grad_(True)
        wt = torch.ones(64, requires_grad=True)
        bt = torch.zeros(64, requires_grad=True)
        rm, rv = torch.zeros(64), torch.ones(64)
        dt = torch.from_numpy(dout)

        def torch_bn():
            return torch.nn.functional.batch_norm(xt, rm, rv, wt, bt, training=True)

        t_f = median_ms(torch_bn, reps)
        yt = torch_bn()
        t_b = median_ms(
            lambda: torch.autograd.grad(yt, (xt, wt, bt), dt, retain_graph=True), reps
        )
        xr = torch.from_numpy(x).requires_grad_(True)
        r_f = median_ms(lambda: torch.relu(xr), reps)
        yr = torch.relu(xr)
        r_b = median_ms(
            lambda: torch.autograd.grad(yr, xr, dt, retain_graph=True), reps
        )
    add("batchnorm fwd (train)", bn_f, 3 * S, t_f)
    add("batchnorm bwd", bn_b, 5 * S, t_b)

    # ReLU: fwd reads x, writes out; bwd reads dout and out, writes dx
    out = relu_forward(x)
    add("relu fwd", median_ms(lambda: relu_forward(x), reps), 2 * S, r_f)
    add("relu bwd", median_ms(lambda: relu_backward(dout, out), reps), 3 * S, r_b)

    # loss: one fused pass reads the logits and writes the gradient; the targets
    # (int64) are read twice (check + weights, then the rows)
    lshape = (4, 11, 360, 480)
    logits = rng.standard_normal(lshape, dtype=np.float32) * 3
    targets = rng.integers(0, 12, (4, 360, 480))
    loss_bytes = 2 * logits.nbytes + 2 * targets.nbytes
    ours = median_ms(
        lambda: softmax_cross_entropy_fused(logits, targets, CAMVID_WEIGHTS, 11), reps
    )
    t_l = None
    if torch is not None:
        lt = torch.from_numpy(logits).requires_grad_(True)
        tt = torch.from_numpy(targets)
        wt = torch.from_numpy(CAMVID_WEIGHTS.astype(np.float32))

        def torch_loss():
            loss = torch.nn.functional.cross_entropy(lt, tt, weight=wt, ignore_index=11)
            return torch.autograd.grad(loss, lt)

        t_l = median_ms(torch_loss, reps)
    add("loss fwd+bwd (fused)", ours, loss_bytes, t_l)

    print(
        f"numba threads {numba.get_num_threads()}, torch threads "
        f"{torch.get_num_threads() if torch else '-'}, {os.cpu_count()} CPUs, "
        f"median of {reps}"
    )
    print(
        f"copy probe: np.copyto of {S / 1e6:.0f} MB: {copy_ms:.1f} ms, "
        f"{copy_gbs:.1f} GB/s (read + write)"
    )
    head = (
        f"{'op':<24}{'ms':>8}{'GB/s':>8}{'% copy':>8}{'torch ms':>10}{'torch/ours':>12}"
    )
    print(head)
    for name, ms, gbs, pct, tms, ratio in rows:
        tcol = f"{tms:10.1f}" if tms else f"{'-':>10}"
        print(f"{name:<24}{ms:8.1f}{gbs:8.1f}{pct:8.0f}{tcol}{ratio:12.2f}")


if __name__ == "__main__":
    main()
