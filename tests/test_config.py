"""Compiler options: one policy for every kernel (npsegnet.config)."""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

import npsegnet.kernels
from npsegnet.config import JIT_OPTIONS, REDUCTION_FASTMATH


def all_kernels():
    for info in pkgutil.iter_modules(npsegnet.kernels.__path__):
        module = importlib.import_module(f"npsegnet.kernels.{info.name}")
        for name, obj in vars(module).items():
            if (
                isinstance(obj, CPUDispatcher)
                and obj.py_func.__module__ == module.__name__
            ):
                yield f"{info.name}.{name}", obj


KERNELS = dict(all_kernels())
#: The only kernels compiled with njit(reduction=True).
SUMMING_HELPERS = {
    "batchnorm._shifted_sums",
    "batchnorm._dot_sums",
    "conv._row_dot",  # the depthwise weight gradient's row dot products
}


def test_kernels_found():
    assert len(KERNELS) > 15
    assert "batchnorm._shifted_sums" in KERNELS and "conv._pack_cols" in KERNELS


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_kernel_uses_the_project_options(name):
    options = KERNELS[name].targetoptions
    assert JIT_OPTIONS["cache"]
    assert type(KERNELS[name]._cache).__name__ != "NullCache"  # cache=True
    assert options.get("nogil") is True
    fastmath = options.get("fastmath", False)
    if name in SUMMING_HELPERS:
        # the summing helpers only: reordered additions and fused multiply-adds
        assert set(fastmath) == set(REDUCTION_FASTMATH) == {"reassoc", "contract"}
    else:
        assert not fastmath, f"{name} has fastmath={fastmath}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reduction_helpers_keep_nan_and_inf(dtype):
    from npsegnet.kernels.batchnorm import _dot_sums, _shifted_sums

    row = np.arange(1000, dtype=dtype)
    s, q = _shifted_sums(row, dtype(0))
    assert s == pytest.approx(row.sum(dtype=np.float64), rel=1e-6)
    assert q == pytest.approx((row.astype(np.float64) ** 2).sum(), rel=1e-6)
    row[500] = np.nan
    assert all(np.isnan(v) for v in _shifted_sums(row, dtype(0)))
    row[500] = np.inf
    s, t = _dot_sums(row, np.ones_like(row), dtype(0))
    assert s == np.inf and t == np.inf
    row[0] = -np.inf
    assert all(np.isnan(v) for v in _dot_sums(row, np.ones_like(row), dtype(0)))


def test_slice_shape_check_stays_with_a_plain_message():
    """config swaps Numba's slice-assignment error message, not the check."""
    import numba
    from numba.np import arrayobj

    from npsegnet import config

    if hasattr(arrayobj, "raise_with_shape_context"):
        assert arrayobj.raise_with_shape_context is config._slice_shape_mismatch

    @numba.njit(cache=False)
    def assign(a, b):
        a[0:2] = b

    # compiled: our fixed message; under NUMBA_DISABLE_JIT: NumPy's own
    with pytest.raises(ValueError, match="cannot assign slice|could not broadcast"):
        assign(np.zeros(4), np.ones(3))
    a = np.zeros(4)
    assign(a, np.ones(2))
    np.testing.assert_array_equal(a, [1, 1, 0, 0])
