"""Buffer reuse: a steady training step allocates (almost) nothing new.

``tracemalloc`` sees NumPy's allocations, so it measures what one step asks of
the C library. The reference quantity is the step's **activation memory**:
the bytes of the distinct arrays the layers keep in their ``cache`` for the
backward pass, counted once per underlying buffer, right after the forward
pass (computed from the model, :func:`activation_bytes`). After one warm-up
step, a step may allocate under 5 % of it anew (the fresh logits the model
returns are most of that), and leave the traced memory where it found it.

Also here: the contract of ``layers/base.py`` (a layer on its own never
overwrites what it returned; a model returns fresh arrays; reuse changes no
result) and the :class:`~npsegnet.layers.buffers.BufferPool` itself.
"""

from __future__ import annotations

import copy
import gc
import pickle
import tracemalloc

import numpy as np
import pytest

from npsegnet.kernels.conv_fft import TARGET_CHUNK_BYTES
from npsegnet.kernels.relu import relu_forward
from npsegnet.layers import (
    BatchNorm2D,
    Conv2D,
    MaxPool2D,
    MaxUnpool2D,
    ReLU,
    set_conv_algorithm,
)
from npsegnet.layers.buffers import BufferPool
from npsegnet.layers.softmax_loss import SoftmaxCrossEntropy
from npsegnet.models.registry import build_model
from npsegnet.optim import SGD

SHAPE = (2, 3, 64, 96)  # N, C, H, W: small for CI, four poolings deep
NUM_CLASSES = 12


def _root(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _arrays_in(value):
    """The ndarrays inside a cache (named tuples, dataclasses, records)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays_in(item)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for item in vars(value).values():
            yield from _arrays_in(item)


def activation_bytes(model) -> int:
    """Bytes of the distinct buffers the model's layers cache for backward."""
    roots = {}
    for module in model.modules():
        for array in _arrays_in(module.cache):
            root = _root(array)
            roots[id(root)] = root
    return sum(a.nbytes for a in roots.values())


def _setup(name, seed=0):
    model = build_model(name, num_classes=NUM_CLASSES, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE, np.float32)
    y = rng.integers(0, NUM_CLASSES, (SHAPE[0], *SHAPE[2:]))
    loss = SoftmaxCrossEntropy()
    opt = SGD(model.params, model.grads, lr=0.01, momentum=0.9, weight_decay=5e-4)
    return model, x, y, loss, opt


def _plain_step(model, x, y, loss, opt):
    """The loop a student writes: nothing but the public calls."""
    model.zero_grad()
    loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    opt.step()


# --------------------------------------------------------------------------
# the steady step
# --------------------------------------------------------------------------
def _steady_step(name, algorithm):
    """Activation bytes, new bytes at the peak of a steady step, its growth,
    and the convolutions that took the FFT path."""
    model, x, y, loss, opt = _setup(name)
    set_conv_algorithm(model, algorithm)
    model.zero_grad()
    loss.forward(model.forward(x), y)
    activations = activation_bytes(model)
    fft = [m for m in model.modules() if isinstance(m, Conv2D) and m.cache.fft]
    model.backward(loss.backward())
    opt.step()  # the warm-up step: buffers sized on first use
    assert activations > 4 * x.nbytes  # the measure counts the maps, not just x
    gc.collect()
    tracemalloc.start()
    try:
        # one traced step first: tracemalloc only sees the frees of what it
        # saw allocated (the last step's logits, freed during this one)
        _plain_step(model, x, y, loss, opt)
        gc.collect()
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        _plain_step(model, x, y, loss, opt)
        gc.collect()  # cyclic garbage of the Python objects, not of arrays
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return activations, peak - start, current - start, fft


@pytest.mark.parametrize("name", ["segnet-basic", "bayesian-segnet-basic"])
def test_a_steady_step_allocates_under_5_percent_of_its_activations(name):
    # the GEMM path: every scratch array is a reused workspace
    activations, new, grown, _ = _steady_step(name, "gemm")
    assert new < 0.05 * activations, (
        f"{name}: a steady step allocated {new} bytes, "
        f"{new / activations:.1%} of its {activations} bytes of activations"
    )
    assert grown < 64 * 1024, f"{name}: memory grew by {grown}"


def test_a_steady_fft_step_allocates_its_spectra_and_chunks_only():
    """The FFT path allocates more, by design: scipy.fft returns new arrays (it
    takes no ``out=``). Beyond the GEMM path's 5 %, a step may hold one
    layer's weight spectrum at a time (each pass computes its own) and the
    transforms of the chunks in flight (at most two arrays of
    TARGET_CHUNK_BYTES each, per thread and pass), and nothing may stay."""
    import numba

    activations, new, grown, fft = _steady_step("segnet-basic", "fft")
    assert fft, "no layer took the FFT path"
    # complex64 spectra of 32x32 tiles (the largest tile the rule picks)
    spectrum = max(m.in_channels * m.out_channels for m in fft) * 32 * 17 * 8
    chunks = 4 * numba.get_num_threads() * 2 * TARGET_CHUNK_BYTES
    allowed = 0.05 * activations + 2 * spectrum + chunks
    assert new < allowed, f"a steady FFT step allocated {new} bytes, allowed {allowed}"
    assert grown < 64 * 1024, f"memory grew by {grown}"


def test_reuse_changes_no_result():
    reused, x, y, loss, opt = _setup("segnet-basic")
    fresh = copy.deepcopy(reused)
    fresh.reuse_buffers = False
    assert reused.reuse_buffers and not fresh.reuse_buffers
    opt_fresh = SGD(fresh.params, fresh.grads, lr=0.01, momentum=0.9)
    opt = SGD(reused.params, reused.grads, lr=0.01, momentum=0.9)
    for _ in range(3):  # the later steps run on reused buffers
        _plain_step(reused, x, y, loss, opt)
        _plain_step(fresh, x, y, SoftmaxCrossEntropy(), opt_fresh)
    for key, value in fresh.params.items():
        np.testing.assert_array_equal(reused.params[key], value, err_msg=key)
    np.testing.assert_array_equal(reused.forward(x), fresh.forward(x))


def test_release_and_a_new_shape_start_over():
    model, x, y, loss, opt = _setup("segnet-basic")
    pool = model._buffer_pool
    _plain_step(model, x, y, loss, opt)
    assert pool.nbytes > activation_bytes(model)  # maps and gradients are kept
    model.release_buffers()
    assert len(pool) == 0
    _plain_step(model, x, y, loss, opt)  # still works: buffers sized anew
    kept = pool.nbytes
    smaller = np.ascontiguousarray(x[:1, :, :32, :48])
    model.forward(smaller)
    assert pool.nbytes < kept / 2  # the old size's buffers were let go


def test_layers_added_later_join_the_models_pool():
    model = build_model("bayesian-segnet-basic", num_classes=NUM_CLASSES)
    x = np.zeros((1, 3, 32, 32), np.float32)
    model.forward(x)
    assert all(m._buffer_pool is model._buffer_pool for m in model.modules())


# --------------------------------------------------------------------------
# the contract: what the user holds is never overwritten
# --------------------------------------------------------------------------
def test_model_forward_twice_returns_two_independent_arrays():
    model = build_model("segnet-basic", num_classes=NUM_CLASSES, channels=8)
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((1, 3, 32, 48), np.float32) for _ in range(2))
    first = model.forward(a)
    kept = first.copy()
    second = model.forward(b)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)
    del first, second
    # the model does not keep what it returned, even once the user drops it
    third = model.forward(a)
    assert all(third is not arr for arrs in model._buffer_pool._arrays.values()
               for arr in arrs)  # fmt: skip


def test_model_backward_returns_a_fresh_input_gradient():
    model = build_model("segnet-basic", num_classes=NUM_CLASSES, channels=8)
    model.needs_input_grad = True
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 48), np.float32)
    dx1 = model.backward(np.ones_like(model.forward(x)))
    kept = dx1.copy()
    dx2 = model.backward(np.ones_like(model.forward(x)) * 2)
    assert not np.shares_memory(dx1, dx2)
    np.testing.assert_array_equal(dx1, kept)


def _standalone_cases(rng):
    x = rng.standard_normal((2, 4, 6, 8), np.float32)
    pool = MaxPool2D(2, 2)
    _, indices = pool.forward(x)
    return [
        ("conv", Conv2D(4, 5, 3, seed=0), (x,)),
        ("bn", BatchNorm2D(4, relu=True), (x,)),
        ("relu", ReLU(), (x,)),
        ("pool", MaxPool2D(2, 2), (x,)),
        ("unpool", MaxUnpool2D(2, 2), (x[:, :, :3, :4], indices, (6, 8))),
    ]


def test_a_layer_on_its_own_never_overwrites_what_it_returned(rng):
    for name, layer, args in _standalone_cases(rng):
        assert not layer.reuse_buffers
        first = layer.forward(*args)
        first = first[0] if isinstance(first, tuple) else first
        kept = first.copy()
        other = (args[0] + 1, *args[1:])
        second = layer.forward(*other)
        second = second[0] if isinstance(second, tuple) else second
        assert not np.shares_memory(first, second), name
        np.testing.assert_array_equal(first, kept, err_msg=name)
        d1 = layer.backward(np.ones_like(second))
        d1_kept = d1.copy()
        d2 = layer.backward(np.full_like(second, 2))
        assert not np.shares_memory(d1, d2), name
        np.testing.assert_array_equal(d1, d1_kept, err_msg=name)


def test_a_models_layer_called_directly_keeps_what_it_returned(rng):
    # with reuse on, an array the caller holds is still never handed out again
    model = build_model("segnet-basic", num_classes=NUM_CLASSES, channels=8)
    conv = model.enc2.conv
    x = rng.standard_normal((1, 8, 16, 16), np.float32)
    first = conv.forward(x)
    kept = first.copy()
    for _ in range(3):
        conv.forward(x + 1)
    np.testing.assert_array_equal(first, kept)


# --------------------------------------------------------------------------
# the pool
# --------------------------------------------------------------------------
def test_pool_hands_out_only_unreferenced_arrays():
    pool = BufferPool()
    a = pool.empty((3, 4), np.float32)
    view = a[1:]
    del a
    b = pool.empty((3, 4), np.float32)
    assert not np.shares_memory(b, view)  # a view keeps its base in use
    del view
    c = pool.empty((3, 4), np.float32)
    assert len(pool) == 2 and c is not b
    assert pool.empty((3, 4), np.float64).dtype == np.float64  # another key
    assert len(pool) == 3


def test_pool_hand_over_and_copies():
    pool = BufferPool()
    a = pool.empty((5,), np.int64)
    pool.hand_over(a[2:])  # by a view of it, too
    assert len(pool) == 0
    pool.empty((5,), np.int64)
    assert len(copy.deepcopy(pool)) == 0  # scratch memory is not state
    assert len(pickle.loads(pickle.dumps(pool))) == 0
    model = build_model("segnet-basic", num_classes=NUM_CLASSES, channels=4)
    model.forward(np.zeros((1, 3, 16, 16), np.float32))
    twin = copy.deepcopy(model)
    assert twin._buffer_pool is not model._buffer_pool and len(twin._buffer_pool) == 0
    assert all(m._buffer_pool is twin._buffer_pool for m in twin.modules())


def test_kernels_check_their_out_arrays(rng):
    x = rng.standard_normal((2, 3, 4, 5), np.float32)
    out = np.empty_like(x)
    assert relu_forward(x, out=out) is out
    with pytest.raises(ValueError, match="share memory"):
        relu_forward(x, out=x)
    with pytest.raises(ValueError, match="shape"):
        relu_forward(x, out=np.empty((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        relu_forward(x, out=np.empty(x.shape, np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        relu_forward(x, out=np.empty((2, 3, 4, 10), np.float32)[..., ::2])


def test_inference_borrows_from_the_pool_but_never_grows_it():
    model = build_model("segnet-basic", num_classes=NUM_CLASSES, channels=8)
    pool = model._buffer_pool
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 48), np.float32)
    model.eval()
    model.forward(x, keep_cache=False)
    assert len(pool) == 0  # a model that only predicts keeps nothing
    model.train()
    model.backward(np.ones_like(model.forward(x)))
    kept = len(pool)
    assert kept > 0
    model.eval()
    fresh = copy.deepcopy(model)
    fresh.reuse_buffers = False
    expected = fresh.forward(x, keep_cache=False)
    np.testing.assert_array_equal(model.forward(x, keep_cache=False), expected)
    model.forward(np.zeros((2, 3, 16, 16), np.float32), keep_cache=False)
    assert len(pool) == kept  # borrowed what was free; another size kept nothing
