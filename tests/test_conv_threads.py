"""The convolutions' own threads (npsegnet.kernels._threads) and their parts."""

from __future__ import annotations

import time

import numpy as np
import pytest

from npsegnet.kernels import _threads
from npsegnet.kernels import conv as kconv
from npsegnet.reference import conv as rconv


@pytest.fixture
def always_threaded(monkeypatch):
    """Hand every convolution to the threads, however small."""
    monkeypatch.setattr(kconv, "THREADED_MIN_FLOPS", 0)


# (N, C, H, W), F, k, padding: one image (cut in halves), an odd batch, an
# even one, rows that lie wholly in the padding, the first layer's full im2col
SHAPES = [
    ((1, 4, 13, 9), 5, 3, 1),
    ((3, 2, 7, 11), 3, 5, 2),
    ((2, 3, 9, 8), 4, 7, 3),
    ((1, 2, 3, 6), 2, 3, 4),
    ((1, 3, 10, 12), 6, 7, 3),
]


@pytest.mark.parametrize("shape, F, k, pad", SHAPES)
def test_threaded_parts_match_the_reference(always_threaded, shape, F, k, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((F, shape[1], k, k))
    b = rng.standard_normal(F)
    out = kconv.conv2d_forward(x, w, b, pad)
    want = rconv.conv2d_forward(x, w, b, pad)
    # float64 sums of at most C * k * k = 147 products of O(1) values
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = kconv.conv2d_backward(dout, x, w, pad)
    rdx, rdw, rdb = rconv.conv2d_backward(dout, x, w, pad)
    np.testing.assert_allclose(dx, rdx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dw, rdw, rtol=0, atol=1e-10)  # sums over N * H * W
    np.testing.assert_allclose(db, rdb, rtol=0, atol=1e-10)


def test_threaded_runs_repeat_bit_for_bit(always_threaded):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 40, 30), dtype=np.float32)
    w = rng.standard_normal((8, 8, 7, 7), dtype=np.float32)
    b = np.zeros(8, np.float32)
    first = kconv.conv2d_forward(x, w, b, 3)
    grads = kconv.conv2d_backward(first, x, w, 3)
    for _ in range(3):
        np.testing.assert_array_equal(kconv.conv2d_forward(x, w, b, 3), first)
        again = kconv.conv2d_backward(first, x, w, 3)
        for a, g in zip(again, grads, strict=True):
            np.testing.assert_array_equal(a, g)


@pytest.mark.parametrize(
    "N, lo, hi, threads",
    [(1, 0, 7, 2), (3, 3, 20, 2), (4, 0, 5, 2), (2, 0, 1, 3), (5, 2, 9, 1)],
)
def test_split_rows_covers_every_row_once(N, lo, hi, threads):
    parts = _threads.split_rows(N, lo, hi, threads)
    covered = sorted((n, r) for n, a, b in parts for r in range(a, b))
    assert covered == [(n, r) for n in range(N) for r in range(lo, hi)]
    assert all(b > a for _, a, b in parts)


def test_results_are_consumed_in_the_order_of_the_parts():
    # later parts finish first; their results must still come in part order
    def work(i):
        time.sleep(0.002 * (8 - i))
        return i

    seen = []
    _threads.run_parts(work, [(i,) for i in range(8)], seen.append)
    assert seen == list(range(8))


def test_an_error_in_a_part_is_raised_in_the_caller():
    def work(i):
        if i == 3:
            raise ValueError("part 3 failed")
        return i

    with pytest.raises(ValueError, match="part 3 failed"):
        _threads.run_parts(work, [(i,) for i in range(6)])
    # and the threads still serve the next run
    seen = []
    _threads.run_parts(lambda i: i, [(i,) for i in range(4)], seen.append)
    assert seen == [0, 1, 2, 3]


# -- run_ranges: the memory-bound kernels a first forward pass needs -------------
def _range_ops(rng, dtype):
    """Pool, unpool, pool backward and eval batch norm of one odd-shaped case."""
    from npsegnet.kernels import batchnorm as kbn
    from npsegnet.kernels import pool as kpool

    x = rng.standard_normal((3, 5, 9, 12)).astype(dtype)
    out, ind = kpool.maxpool2d_forward(x, 2, 2, ceil_mode=True)
    up = kpool.maxunpool2d_forward(out, ind, x.shape)
    dx = kpool.maxpool2d_backward(out, ind, x.shape)
    w, b, m = (rng.standard_normal(5).astype(dtype) for _ in range(3))
    v = rng.random(5).astype(dtype) + 0.5
    bn = kbn.batchnorm2d_forward_eval(x, w, b, m, v, 1e-5, relu=True)
    return out, ind, up, dx, bn


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranges_on_threads_give_the_serial_bits(monkeypatch, dtype):
    import numba

    serial = _range_ops(np.random.default_rng(2), dtype)  # small: calling thread
    calls = []
    real = _threads._workers

    def counted(threads):
        calls.append(threads)
        return real(threads)

    monkeypatch.setattr(_threads, "RANGES_MIN_BYTES", 0)
    monkeypatch.setattr(_threads, "_workers", counted)
    threaded = _range_ops(np.random.default_rng(2), dtype)
    if numba.get_num_threads() > 1:
        assert calls, "run_ranges never handed work to the threads"
    for a, b in zip(threaded, serial, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ranges_cover_every_item_once_and_raise_errors(monkeypatch):
    monkeypatch.setattr(_threads, "RANGES_MIN_BYTES", 0)
    seen = np.zeros(11, np.int64)

    def mark(arr, lo, hi):
        arr[lo:hi] += 1

    _threads.run_ranges(mark, 11, (seen,), nbytes=1)
    np.testing.assert_array_equal(seen, 1)

    def fail(lo, hi):
        if lo == 0:
            raise RuntimeError("part 0 failed")

    with pytest.raises(RuntimeError, match="part 0 failed"):
        _threads.run_ranges(fail, 8, (), nbytes=1)


def test_the_threads_let_go_of_a_finished_task(monkeypatch):
    """A worker that kept its last task's arguments kept a layer's array alive
    until its next task: a whole activation map more at a training step's peak."""
    import weakref

    monkeypatch.setattr(_threads, "RANGES_MIN_BYTES", 0)
    arr = np.zeros(64)
    ref = weakref.ref(arr)
    _threads.run_ranges(lambda a, lo, hi: a[lo:hi].fill(1.0), 8, (arr,), nbytes=1)
    assert arr.sum() == 8
    del arr
    assert ref() is None, "a pool thread still holds the array"

    def closure_over(array):  # as a convolution's parts are
        def work(i):
            array[i] = i
            return i

        return work

    arr = np.zeros(4)
    ref = weakref.ref(arr)
    _threads.run_parts(closure_over(arr), [(i,) for i in range(4)])
    np.testing.assert_array_equal(arr, np.arange(4))
    del arr
    assert ref() is None, "a pool thread still holds the closure"
