"""Argument checks shared by kernels, layers and models.

Every public entry point validates its inputs here before any Numba kernel runs,
so that bad input ends in a ``TypeError`` or ``ValueError`` that names the
argument and what was expected, never in a Numba traceback or a silent wrong
answer.
"""

from __future__ import annotations

import math

import numpy as np

from .config import FLOAT_DTYPES


def check_float_array(x, name: str, ndim: int | None = None, dtype=None) -> np.ndarray:
    """Check that ``x`` is a float32/float64 ndarray of rank ``ndim``.

    Parameters
    ----------
    x : object
        The value to check.
    name : str
        The argument's name, used in the error message.
    ndim : int, optional
        Required number of dimensions (4 for NCHW).
    dtype : dtype, optional
        Required dtype (for example the dtype of a layer's parameters).

    Returns
    -------
    ndarray
        ``x`` itself, made C-contiguous if it was not.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.dtype.name not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        layout = {4: " (N, C, H, W)", 3: " (N, H, W)"}.get(ndim, "")
        raise ValueError(
            f"{name} must be a {ndim}-d array{layout}, got shape {tuple(x.shape)}"
        )
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name} has dtype {x.dtype} but {np.dtype(dtype)} was expected "
            f"(the layer's parameters are {np.dtype(dtype)}; call .astype() on the "
            "layer or convert the input)"
        )
    return np.ascontiguousarray(x)


def check_int_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """Check that ``x`` is an integer ndarray of rank ``ndim``; return it."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array, got shape {tuple(x.shape)}")
    return np.ascontiguousarray(x)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Check that ``value`` is an int >= ``minimum``; return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """Accept an int or a pair of ints (as PyTorch does); return a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (
            check_positive_int(value[0], name, minimum),
            check_positive_int(value[1], name, minimum),
        )
    v = check_positive_int(value, name, minimum)
    return (v, v)


def check_choice(value, name: str, choices) -> str:
    """Check that ``value`` is one of ``choices`` (strings); return it."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_scale_pair(value, name: str) -> tuple[float, float]:
    """Accept a positive number or a pair of them; return a pair of floats."""
    from numbers import Real  # NumPy's float and int scalars register as Real

    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a number or a pair of numbers, got {value!r}")
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, Real):
            raise TypeError(f"{name} must be a number or a pair, got {value!r}")
        if not v > 0 or not np.isfinite(v):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return (float(pair[0]), float(pair[1]))


# -- pooling and unpooling (npsegnet.reference.pool, npsegnet.kernels.pool) ------
def pool_output_size(size: int, kernel: int, stride: int, ceil_mode: bool) -> int:
    """Length of the pooled axis: PyTorch's rule without padding.

    ``floor((size - kernel) / stride) + 1``, or with ``ceil_mode``
    ``ceil((size - kernel) / stride) + 1`` less one if the last window would
    start outside the input (it may hang over the edge, never start past it).
    May be < 1, which the callers reject.
    """
    if ceil_mode:
        out = math.ceil((size - kernel) / stride) + 1
        if (out - 1) * stride >= size:
            out -= 1
        return out
    return (size - kernel) // stride + 1


def _check_pool_args(x, kernel_size, stride, ceil_mode):
    """Check maxpool2d_forward's arguments.

    Returns x, (KH, KW), (SH, SW) and the pooled size (H_out, W_out).
    """
    x = check_float_array(x, "x", ndim=4)
    kernel = check_pair(kernel_size, "kernel_size")
    step = check_pair(stride, "stride")
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {type(ceil_mode).__name__}")
    H, W = x.shape[2:]
    out = tuple(
        pool_output_size(n, k, s, bool(ceil_mode))
        for n, k, s in zip((H, W), kernel, step, strict=True)
    )
    if min(out) < 1:
        raise ValueError(
            f"kernel_size {kernel} is larger than the input x of spatial size "
            f"{(H, W)} (stride {step}, ceil_mode={bool(ceil_mode)}): "
            f"the pooled size would be {out}"
        )
    return x, kernel, step, out


def _check_shape4(shape, name):
    """A 4-tuple of positive ints (an array shape), e.g. ``input_shape``."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"{name} must be a 4-tuple (N, C, H, W), got {shape!r}")
    for d, v in enumerate(shape):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (d >= 2):
            raise ValueError(
                f"{name} must hold ints N, C >= 0 and H, W >= 1, got {shape!r}"
            )
    return tuple(int(v) for v in shape)


def _check_indices(indices, like, like_name):
    """Integer indices of the shape of ``like``, returned as C-contiguous int64."""
    indices = check_int_array(indices, "indices", ndim=4)
    if indices.shape != like.shape:
        raise ValueError(
            f"indices must have the shape of {like_name} {like.shape}, "
            f"got {indices.shape}"
        )
    return np.ascontiguousarray(indices, dtype=np.int64)


def _check_index_range(indices, H, W, what):
    """Every index must address a cell of an (H, W) plane."""
    if indices.size == 0:
        return
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= H * W:
        bad = lo if lo < 0 else hi
        _raise_index_error(bad, H, W, what)


def _raise_index_error(bad, H, W, what):
    raise ValueError(
        f"indices out of range: found {bad}, but each (n, c) plane of the {what} "
        f"has {H}x{W} = {H * W} cells (valid indices 0..{H * W - 1})"
    )


def _check_backward_args(dout, indices, input_shape):
    dout = check_float_array(dout, "dout", ndim=4)
    indices = _check_indices(indices, dout, "dout")
    input_shape = _check_shape4(input_shape, "input_shape")
    if input_shape[:2] != dout.shape[:2]:
        raise ValueError(
            f"input_shape {input_shape} and dout {dout.shape} disagree on (N, C)"
        )
    return dout, indices, input_shape


def _output_hw(output_size, x):
    """``output_size`` as (H, W) or a full (N, C, H, W) shape; return (H, W)."""
    if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
        raise ValueError(
            "output_size must be (H, W) or a full shape (N, C, H, W), "
            f"got {output_size!r}"
        )
    for v in output_size:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(
                f"output_size must hold positive ints, got {output_size!r}"
            )
    if len(output_size) == 4 and tuple(output_size[:2]) != x.shape[:2]:
        # PyTorch ignores the leading two entries; a mismatch here is a bug upstream.
        raise ValueError(
            f"output_size {tuple(output_size)} and x {x.shape} disagree on (N, C)"
        )
    return int(output_size[-2]), int(output_size[-1])


def _check_unpool_args(x, indices, output_size):
    x = check_float_array(x, "x", ndim=4)
    indices = _check_indices(indices, x, "x")
    H_out, W_out = _output_hw(output_size, x)
    return x, indices, (H_out, W_out)


# -- the loss (npsegnet.reference.loss, npsegnet.kernels.loss, the layer) -------
def check_loss_inputs(logits, targets, weight=None, ignore_index=None):
    """Validate the arguments of the loss functions (twins and layer share it).

    Checks types and shapes; the range of the target values is checked by
    :func:`check_target_values` (or, in the kernels, during their first pass).

    Returns
    -------
    logits : ndarray of shape (N, K, H, W), C-contiguous
    targets : ndarray of int of shape (N, H, W), C-contiguous
    weight : ndarray of shape (K,) float64, or None
    ignore_index : int or None
    """
    if not isinstance(logits, np.ndarray):
        raise TypeError(f"logits must be a NumPy array, got {type(logits).__name__}")
    if logits.dtype.name not in ("float32", "float64"):
        raise TypeError(
            f"logits must have dtype float32 or float64, got {logits.dtype}"
        )
    if logits.ndim != 4:
        raise ValueError(
            f"logits must be a 4-d array (N, K, H, W), got shape {logits.shape}"
        )
    if not isinstance(targets, np.ndarray):
        raise TypeError(f"targets must be a NumPy array, got {type(targets).__name__}")
    if targets.dtype.kind not in "iu":
        raise TypeError(
            f"targets must have an integer dtype (class indices), got {targets.dtype}"
        )
    N, K, H, W = logits.shape
    if targets.shape != (N, H, W):
        raise ValueError(
            f"targets must have shape (N, H, W) = {(N, H, W)} to match logits "
            f"{logits.shape}, got {targets.shape}"
        )
    if weight is not None:
        w = np.asarray(weight)
        if w.dtype.kind not in "iuf":
            raise TypeError(f"weight must be a real array, got dtype {w.dtype}")
        w = w.astype(np.float64)
        if w.shape != (K,):
            raise ValueError(
                f"weight must have shape ({K},) (one per class), got {w.shape}"
            )
        if not np.all(np.isfinite(w)):
            raise ValueError("weight must be finite")
        if np.any(w < 0):
            raise ValueError(
                f"weight must be >= 0, got {w.min()} for class {w.argmin()}"
            )
        weight = w
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(
            ignore_index, (int, np.integer)
        ):
            kind = type(ignore_index).__name__
            raise TypeError(f"ignore_index must be an int or None, got {kind}")
        ignore_index = int(ignore_index)
    return (
        np.ascontiguousarray(logits),
        np.ascontiguousarray(targets),
        weight,
        ignore_index,
    )


def bad_target_message(value, K, ignore_index):
    """The error message for a target value outside [0, K)."""
    extra = "" if ignore_index is None else f" and is not ignore_index={ignore_index}"
    return f"targets contain the value {value}, outside [0, {K}){extra}"


def check_target_values(targets, K, ignore_index):
    """Raise ``ValueError`` naming the first target outside [0, K) (not ignored)."""
    t = targets.astype(np.int64)
    bad = (t < 0) | (t >= K)
    if ignore_index is not None:
        bad &= t != ignore_index
    if bad.any():
        raise ValueError(
            bad_target_message(t.reshape(-1)[bad.argmax()], K, ignore_index)
        )


# -- compact 2-bit indices (npsegnet.reference.compact_pool, kernels.compact_pool) --
# The store is defined here, below both twins, because both must build the same
# thing and neither may import the other; both modules re-export it.


def check_compact_window(kernel_size, stride) -> None:
    """Compact indices exist for 2x2 windows with stride 2 only; say so clearly."""
    kernel = check_pair(kernel_size, "kernel_size")
    step = check_pair(stride, "stride")
    if kernel != (2, 2) or step != (2, 2):
        raise ValueError(
            "compact indices support 2x2 windows with stride 2 only "
            f"(kernel_size=2, stride=2), got kernel_size={kernel}, stride={step}; "
            "use int64 indices for other windows"
        )


def compact_plane_bytes(H_out: int, W_out: int) -> int:
    """Bytes of one packed ``(n, c)`` plane: four windows a byte, rounded up."""
    return (H_out * W_out + 3) // 4


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """Pack window codes ``dy * 2 + dx`` four to a byte, plane by plane.

    ``codes`` of shape (N, C, H_out, W_out), values 0..3, becomes uint8 of shape
    (N, C, ceil(H_out * W_out / 4)): window ``k = i * W_out + j`` of a plane
    sits in byte ``k // 4``, bits ``2 * (k % 4)`` and up. Unused bits are 0.
    """
    N, C, H_out, W_out = codes.shape
    K = H_out * W_out
    flat = np.zeros((N, C, 4 * compact_plane_bytes(H_out, W_out)), dtype=np.uint8)
    flat[:, :, :K] = codes.reshape(N, C, K)
    return (
        flat[..., 0::4]
        | flat[..., 1::4] << 2
        | flat[..., 2::4] << 4
        | (flat[..., 3::4] << 6)
    )


def unpack_codes(packed: np.ndarray, H_out: int, W_out: int) -> np.ndarray:
    """The inverse of :func:`pack_codes`: uint8 codes of shape (N, C, H_out, W_out)."""
    N, C, nbytes = packed.shape
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    codes = (packed[..., None] >> shifts) & 3  # (N, C, nbytes, 4)
    return codes.reshape(N, C, 4 * nbytes)[:, :, : H_out * W_out].reshape(
        N, C, H_out, W_out
    )


def _check_compact_sizes(shape, input_size):
    """A pooled shape that a 2x2 stride-2 pool of ``input_size`` can give."""
    shape = _check_shape4(shape, "shape")
    if not isinstance(input_size, (tuple, list)) or len(input_size) != 2:
        raise ValueError(f"input_size must be a pair (H, W), got {input_size!r}")
    H, W = (check_positive_int(v, "input_size") for v in input_size)
    for n, h_out in ((H, shape[2]), (W, shape[3])):
        if h_out not in (n // 2, (n + 1) // 2) or h_out < 1:
            raise ValueError(
                f"a 2x2 stride-2 pool of an input of size {(H, W)} has the pooled "
                f"size ({H // 2}, {W // 2}) (floor mode) or "
                f"({(H + 1) // 2}, {(W + 1) // 2}) (ceil mode), got {shape[2:]}"
            )
    return shape, (H, W)


class CompactIndices:
    """Where each maximum of a 2x2 stride-2 max-pool was, in 2 bits a window.

    A 2x2 window has four cells, so "which cell won" needs 2 bits: the code
    ``dy * 2 + dx`` of the winner inside its window. SegNet's decoder needs
    nothing more to unpool (paper §3: "2 bits for each window"), and it is 32
    times less than PyTorch's int64 flat index ``h * W + w``. The store keeps
    the codes packed four to a byte, plane by plane, together with the two
    sizes that turn them back into flat indices.

    Made by :func:`npsegnet.kernels.compact_pool.maxpool2d_forward_compact`
    (and its reference twin), or from int64 indices with :meth:`from_flat`;
    read by the compact unpool and backward functions. The rules of the int64
    path carry over unchanged (first maximum in raster order, NaN, ceil mode),
    so ``to_flat()`` equals the int64 indices exactly.

    Parameters
    ----------
    packed : ndarray of uint8, shape (N, C, ceil(H_out * W_out / 4))
        Window ``k = i * W_out + j`` of plane ``(n, c)`` in byte ``k // 4``,
        bits ``2 * (k % 4)`` and ``2 * (k % 4) + 1``; unused bits are 0.
    shape : tuple (N, C, H_out, W_out)
        The pooled shape (that of the int64 indices it replaces).
    input_size : tuple (H, W)
        The pooled input's spatial size: the size unpooling restores.

    Notes
    -----
    In ceil mode the last window of an odd side hangs over the edge; its
    winner is always inside, so its code still fits in 2 bits (and the
    constructor checks that it points inside).

    Examples
    --------
    >>> import numpy as np
    >>> indices = np.array([[[[1, 7]]]])  # a 1x2 pooled map of a 3x5 input
    >>> store = CompactIndices.from_flat(indices, (3, 5))
    >>> store
    CompactIndices(shape=(1, 1, 1, 2), input_size=(3, 5), nbytes=1)
    >>> store.codes()
    array([[[[1, 2]]]], dtype=uint8)
    >>> store.to_flat()
    array([[[[1, 7]]]])
    """

    __slots__ = ("packed", "shape", "input_size")
    kernel_size = (2, 2)
    stride = (2, 2)

    def __init__(self, packed, shape, input_size):
        shape, input_size = _check_compact_sizes(shape, input_size)
        if not isinstance(packed, np.ndarray) or packed.dtype != np.uint8:
            kind = getattr(packed, "dtype", type(packed).__name__)
            raise TypeError(f"packed must be a uint8 NumPy array, got {kind}")
        N, C, H_out, W_out = shape
        expected = (N, C, compact_plane_bytes(H_out, W_out))
        if packed.shape != expected:
            raise ValueError(
                f"packed must have shape {expected} (four windows a byte per "
                f"(n, c) plane of a {H_out}x{W_out} pooled map), got {packed.shape}"
            )
        # a read-only view: the codes were checked, and must stay as checked
        self.packed = np.ascontiguousarray(packed).view()
        self.packed.flags.writeable = False
        self.shape = shape
        self.input_size = input_size
        self._check_edges()

    def _check_edges(self):
        """The winner of a window that hangs over the edge must be inside."""
        N, C, H_out, W_out = self.shape
        H, W = self.input_size
        for hangs, k, bit, side in (
            (2 * H_out > H, (H_out - 1) * W_out + np.arange(W_out), 2, "bottom"),
            (2 * W_out > W, np.arange(H_out) * W_out + W_out - 1, 1, "right"),
        ):
            if not hangs or N * C == 0:
                continue
            codes = (self.packed[:, :, k >> 2] >> (2 * (k & 3)).astype(np.uint8)) & 3
            bad = codes & bit
            if bad.any():
                n, c, m = np.unravel_index(np.argmax(bad), bad.shape)
                i, j = divmod(int(k[m]), W_out)
                raise ValueError(
                    f"packed code {int(codes[n, c, m])} of window (n, c, i, j) = "
                    f"{(int(n), int(c), i, j)} points past the {side} edge of the "
                    f"{H}x{W} input (that window hangs over the edge)"
                )

    @property
    def nbytes(self) -> int:
        """Bytes of the packed codes (what a decoder keeps)."""
        return int(self.packed.nbytes)

    def codes(self) -> np.ndarray:
        """The window codes ``dy * 2 + dx``, uint8 of shape (N, C, H_out, W_out)."""
        return unpack_codes(self.packed, *self.shape[2:])

    def to_flat(self) -> np.ndarray:
        """PyTorch's form: int64 flat indices ``h * W + w`` per ``(n, c)`` plane.

        Returns
        -------
        ndarray of int64, shape (N, C, H_out, W_out)
            Exactly what :func:`npsegnet.kernels.pool.maxpool2d_forward`
            returns for the same input with 2x2 windows and stride 2.
        """
        H_out, W_out = self.shape[2:]
        W = self.input_size[1]
        codes = self.codes()
        rows = 2 * np.arange(H_out, dtype=np.int64)[:, None] + (codes >> 1)
        cols = 2 * np.arange(W_out, dtype=np.int64) + (codes & 1)
        return (rows * W + cols).astype(np.int64, copy=False)

    @classmethod
    def from_flat(cls, indices, input_size, kernel_size=2, stride=2):
        """Pack int64 flat indices of a 2x2 stride-2 max-pool.

        Parameters
        ----------
        indices : ndarray of int, shape (N, C, H_out, W_out)
            Flat ``h * W + w`` per plane, e.g. from
            :func:`npsegnet.kernels.pool.maxpool2d_forward`.
        input_size : (H, W)
            The pooled input's spatial size.
        kernel_size, stride : int or (int, int)
            The pool's window; only 2 and 2 are supported (anything else is
            refused, naming what is).

        Raises
        ------
        ValueError
            If an index does not lie in its own window (these are not the
            indices of a 2x2 stride-2 pool of ``input_size``).
        """
        check_compact_window(kernel_size, stride)
        indices = np.asarray(check_int_array(indices, "indices", ndim=4), np.int64)
        shape, (H, W) = _check_compact_sizes(indices.shape, input_size)
        H_out, W_out = shape[2:]
        rows, cols = np.divmod(indices, W)
        dy = rows - 2 * np.arange(H_out)[:, None]
        dx = cols - 2 * np.arange(W_out)
        ok = (indices >= 0) & (indices < H * W) & (dy >> 1 == 0) & (dx >> 1 == 0)
        if not ok.all():
            n, c, i, j = (int(v) for v in np.unravel_index(np.argmin(ok), ok.shape))
            raise ValueError(
                f"indices[{n}, {c}, {i}, {j}] = {int(indices[n, c, i, j])} is not in "
                f"its 2x2 window (rows {2 * i}-{2 * i + 1}, columns "
                f"{2 * j}-{2 * j + 1} of the {H}x{W} input): these are not the "
                "indices of a 2x2 stride-2 max-pool of that size"
            )
        return cls(pack_codes((dy * 2 + dx).astype(np.uint8)), shape, (H, W))

    def __repr__(self) -> str:
        return (
            f"CompactIndices(shape={self.shape}, input_size={self.input_size}, "
            f"nbytes={self.nbytes})"
        )


def check_compact_store(store, name: str = "indices") -> CompactIndices:
    """``store`` must be a :class:`CompactIndices`; a bare array is refused."""
    if not isinstance(store, CompactIndices):
        hint = ""
        if isinstance(store, np.ndarray):
            hint = (
                " (int64 indices go to npsegnet.kernels.pool, or convert them with "
                "CompactIndices.from_flat(indices, input_size))"
            )
        raise TypeError(
            f"{name} must be a CompactIndices store from maxpool2d_forward_compact, "
            f"got {type(store).__name__}{hint}"
        )
    return store


def _check_compact_pool_args(x, ceil_mode):
    """maxpool2d_forward_compact's arguments: x and the pooled size (H_out, W_out)."""
    x, _, _, out = _check_pool_args(x, 2, 2, ceil_mode)
    return x, out


def _check_compact_unpool_args(x, store, output_size):
    x = check_float_array(x, "x", ndim=4)
    store = check_compact_store(store)
    if x.shape != store.shape:
        raise ValueError(
            f"x must have the pooled shape the indices were recorded for "
            f"{store.shape}, got {x.shape}"
        )
    if output_size is not None:
        size = _output_hw(output_size, x)
        if size != store.input_size:
            raise ValueError(
                f"output_size {tuple(output_size)} differs from the pooled input's "
                f"size {store.input_size} the indices were recorded for (compact "
                "indices restore exactly that size)"
            )
    return x, store


def _check_compact_backward_args(dout, store):
    """maxpool2d_backward_compact: dout has the pooled shape."""
    dout = check_float_array(dout, "dout", ndim=4)
    store = check_compact_store(store)
    if dout.shape != store.shape:
        raise ValueError(
            f"dout must have the pooled shape {store.shape} of the indices, "
            f"got {dout.shape}"
        )
    return dout, store


def _check_compact_gather_args(dout, store):
    """maxunpool2d_backward_compact: dout has the unpooled (input) shape."""
    dout = check_float_array(dout, "dout", ndim=4)
    store = check_compact_store(store)
    expected = store.shape[:2] + store.input_size
    if dout.shape != expected:
        raise ValueError(
            f"dout must have the unpooled shape {expected} of the indices, "
            f"got {dout.shape}"
        )
    return dout, store
