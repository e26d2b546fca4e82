"""What each exercise is checked on: the cases, one builder per op.

Every exercise is a function of :mod:`npsegnet.reference`. Its cases are small
float64 inputs chosen to catch the usual mistakes: odd heights and widths,
batch size 1, tied maxima in a pooling window (the first maximum wins),
overlapping windows (stride < kernel), a constant batch-norm channel, huge
logits. A case whose op is differentiable there (no tie, no ReLU input at 0,
no repeated unpooling index) also carries the float64 centred-difference
gradient of the reference *forward* pass, which a backward pass must match.

Values for gradient checks come from :func:`_distinct`: a shuffled grid with
steps far larger than the finite-difference step, so no two values of a window
are within reach of each other and none is 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from difflib import get_close_matches

import numpy as np

from ..gradcheck import numerical_gradient, numerical_gradient_array
from ..reference import batchnorm, conv, dropout, loss, pool, relu

#: Finite-difference step of the gradient checks (float64).
H_STEP = 1e-6


@dataclass
class Case:
    """One input of an exercise.

    ``args``/``kwargs`` are passed to both the student's function and the
    reference. ``numeric``, when set, returns the centred-difference gradient
    of each output the backward pass must produce, by name.
    """

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    numeric: Callable[[], dict[str, np.ndarray]] | None = None


@dataclass(frozen=True)
class Exercise:
    """An op to implement: its reference twin, what it returns, its cases."""

    name: str
    reference: Callable
    outputs: tuple[str, ...]  # one name: the op returns a single value
    cases: Callable[[], list[Case]]


# -- inputs ------------------------------------------------------------------------
def _distinct(shape, rng, scale=2.0):
    """Values ``(k + 1/4) * step - scale`` for k shuffled: gaps of ``step``, no 0.

    0 would need ``k + 1/4 = scale / step = size / 2``, a multiple of 1/2; so
    every value is at least ``step / 4`` from 0.
    """
    size = int(np.prod(shape))
    step = 2.0 * scale / max(size, 1)
    return ((rng.permutation(size) + 0.25) * step - scale).reshape(shape)


def _ties(shape, rng):
    """Small integers: most pooling windows hold a tied maximum."""
    return rng.integers(0, 3, size=shape).astype(np.float64)


def _gradient(f, point, dout):
    """Centred difference of ``sum(f(z) * dout)`` at ``point`` (left untouched)."""
    return numerical_gradient_array(
        f, np.array(point, dtype=np.float64), dout, h=H_STEP
    )


# -- pooling -----------------------------------------------------------------------
# (label, shape, kernel_size, stride, ceil_mode, values)
_POOL = [
    ("2x2 stride 2", (2, 3, 4, 6), 2, 2, False, "distinct"),
    (
        "odd size 5x7, batch 1 (last row and column unpooled)",
        (1, 2, 5, 7),
        2,
        2,
        False,
        "distinct",
    ),
    (
        "odd size 5x7, ceil_mode=True (windows hang over the edge)",
        (1, 2, 5, 7),
        2,
        2,
        True,
        "distinct",
    ),
    ("overlapping windows 3x3 stride 2", (2, 2, 7, 9), 3, 2, False, "distinct"),
    (
        "overlapping window (2, 3) stride (1, 2)",
        (1, 2, 5, 8),
        (2, 3),
        (1, 2),
        False,
        "distinct",
    ),
    (
        "one maximum shared by four 3x3 stride 2 windows",
        (1, 1, 7, 7),
        3,
        2,
        False,
        "shared",
    ),
    (
        "tied maxima 2x2 stride 2 (the first one wins)",
        (2, 2, 4, 6),
        2,
        2,
        False,
        "ties",
    ),
    ("tied maxima, overlapping 3x3 stride 2", (1, 2, 7, 7), 3, 2, False, "ties"),
]


def _pool_inputs(seed):
    """(label, x, kernel_size, stride, ceil_mode, differentiable) per pooling case."""
    rng = np.random.default_rng(seed)
    for label, shape, k, s, ceil, values in _POOL:
        if values == "ties":
            x = _ties(shape, rng)
        else:
            x = _distinct(shape, rng)
        if values == "shared":
            x[..., 2, 2] = (
                10.0  # in the overlap of windows (0, 0), (0, 1), (1, 0), (1, 1)
            )
        yield label, x, k, s, ceil, values != "ties"


def _maxpool2d_forward_cases():
    return [Case(label, (x, k, s, ceil)) for label, x, k, s, ceil, _ in _pool_inputs(1)]


def _maxpool2d_backward_cases():
    rng = np.random.default_rng(2)
    cases = []
    for label, x, k, s, ceil, smooth in _pool_inputs(2):
        _, indices = pool.maxpool2d_forward(x, k, s, ceil)
        dout = rng.standard_normal(indices.shape)
        numeric = None
        if smooth:

            def numeric(x=x, k=k, s=s, ceil=ceil, dout=dout):
                f = lambda z: pool.maxpool2d_forward(z, k, s, ceil)[0]  # noqa: E731
                return {"dx": _gradient(f, x, dout)}

        cases.append(Case(label, (dout, indices, x.shape), numeric=numeric))
    return cases


def _repeats(indices):
    """True if some (n, c) plane holds an index twice (overlapping windows)."""
    flat = indices.reshape(indices.shape[0] * indices.shape[1], -1)
    return any(len(np.unique(row)) < row.size for row in flat)


def _maxunpool2d_forward_cases():
    rng = np.random.default_rng(3)
    cases = []
    for label, x, k, s, ceil, _ in _pool_inputs(3):
        _, indices = pool.maxpool2d_forward(x, k, s, ceil)
        values = _distinct(indices.shape, rng)
        cases.append(Case(label, (values, indices, x.shape[2:])))
    return cases


def _maxunpool2d_backward_cases():
    rng = np.random.default_rng(4)
    cases = []
    for label, x, k, s, ceil, _ in _pool_inputs(4):
        _, indices = pool.maxpool2d_forward(x, k, s, ceil)
        dout = rng.standard_normal(x.shape)
        numeric = None
        # A repeated index keeps the last value written, so the forward pass is
        # flat in the earlier copies; the reference (as PyTorch) still hands the
        # gradient to every copy. Those cases compare with the reference only.
        if not _repeats(indices):
            v = rng.standard_normal(indices.shape)

            def numeric(indices=indices, size=x.shape[2:], dout=dout, v=v):
                f = lambda z: pool.maxunpool2d_forward(z, indices, size)  # noqa: E731
                return {"dx": _gradient(f, v, dout)}

        cases.append(Case(label, (dout, indices), numeric=numeric))
    return cases


# -- convolution -------------------------------------------------------------------
# (label, (N, C_in, H, W), (C_out, KH, KW), padding, bias)
_CONV = [
    ("3x3, padding 1, odd size 5x7, batch 1", (1, 2, 5, 7), (3, 3, 3), 1, True),
    ("3x3, padding 0 (the map shrinks)", (2, 2, 6, 5), (2, 3, 3), 0, True),
    ("7x7, padding 3 (SegNet-Basic)", (1, 1, 7, 8), (2, 7, 7), 3, True),
    ("1x1, no bias", (2, 3, 3, 4), (2, 1, 1), 0, False),
    ("3x1 kernel, padding 1", (2, 3, 4, 5), (2, 3, 1), 1, True),
    ("3x3, padding 2 (the map grows)", (1, 2, 5, 5), (2, 3, 3), 2, True),
]


def _conv_inputs(seed):
    rng = np.random.default_rng(seed)
    for label, shape, (F, KH, KW), padding, has_bias in _CONV:
        x = rng.standard_normal(shape)
        weight = rng.standard_normal((F, shape[1], KH, KW)) / np.sqrt(
            shape[1] * KH * KW
        )
        bias = rng.standard_normal(F)
        yield label, x, weight, bias if has_bias else None, padding


def _conv2d_forward_cases():
    return [Case(label, (x, w, b, p)) for label, x, w, b, p in _conv_inputs(5)]


def _conv2d_backward_cases():
    rng = np.random.default_rng(6)
    cases = []
    for label, x, w, b, p in _conv_inputs(6):
        b = np.zeros(w.shape[0]) if b is None else b
        dout = rng.standard_normal(conv.conv2d_forward(x, w, b, p).shape)

        def numeric(x=x, w=w, b=b, p=p, dout=dout):
            return {
                "dx": _gradient(lambda z: conv.conv2d_forward(z, w, b, p), x, dout),
                "dweight": _gradient(
                    lambda z: conv.conv2d_forward(x, z, b, p), w, dout
                ),
                "dbias": _gradient(lambda z: conv.conv2d_forward(x, w, z, p), b, dout),
            }

        cases.append(Case(label, (dout, x, w, p), numeric=numeric))
    return cases


# -- batch normalisation -----------------------------------------------------------
# (label, shape, eps, relu, constant channel)
_BN = [
    ("batch 1, odd size 5x7", (1, 3, 5, 7), 1e-5, False, False),
    ("batch 2, 4x6", (2, 2, 4, 6), 1e-5, False, False),
    ("relu=True (fused BN + ReLU)", (2, 3, 3, 5), 1e-5, True, False),
    (
        "a constant channel (variance 0: eps keeps it finite)",
        (2, 2, 3, 3),
        1e-5,
        False,
        True,
    ),
    ("eps = 0.1 (where eps goes matters)", (2, 2, 3, 4), 0.1, False, False),
]


def _bn_inputs(seed):
    rng = np.random.default_rng(seed)
    for label, shape, eps, relu_, constant in _BN:
        C = shape[1]
        x = 3.0 + 2.0 * _distinct(shape, rng)
        if constant:
            x[:, 1] = 1.5
        weight = 1.0 + 0.5 * rng.standard_normal(C)
        bias = 0.5 * rng.standard_normal(C)
        yield label, x, weight, bias, eps, relu_


def _batchnorm2d_forward_train_cases():
    return [Case(label, (x, w, b, eps, r)) for label, x, w, b, eps, r in _bn_inputs(7)]


def _batchnorm2d_forward_eval_cases():
    rng = np.random.default_rng(8)
    cases = []
    for label, x, w, b, eps, r in _bn_inputs(8):
        if "constant" in label:
            continue  # eval mode has no batch statistics
        C = x.shape[1]
        running_mean = rng.standard_normal(C)
        running_var = rng.uniform(0.5, 2.0, C)
        cases.append(Case(label, (x, w, b, running_mean, running_var, eps, r)))
    return cases


def _batchnorm2d_backward_cases():
    rng = np.random.default_rng(9)
    cases = []
    for label, x, w, b, eps, r in _bn_inputs(9):
        out, mean, _, inv_std = batchnorm.batchnorm2d_forward_train(x, w, b, eps, r)
        dout = rng.standard_normal(x.shape)

        def numeric(x=x, w=w, b=b, eps=eps, r=r, dout=dout):
            def f(x, w, b):
                return batchnorm.batchnorm2d_forward_train(x, w, b, eps, r)[0]

            return {
                "dx": _gradient(lambda z: f(z, w, b), x, dout),
                "dweight": _gradient(lambda z: f(x, z, b), w, dout),
                "dbias": _gradient(lambda z: f(x, w, z), b, dout),
            }

        kwargs = {"out": out} if r else {}
        cases.append(Case(label, (dout, x, mean, inv_std, w), kwargs, numeric))
    return cases


def _batchnorm2d_backward_eval_cases():
    rng = np.random.default_rng(10)
    cases = []
    for label, x, w, b, eps, r in _bn_inputs(10):
        if "constant" in label:
            continue
        C = x.shape[1]
        running_mean = 3.0 + rng.standard_normal(C)
        running_var = rng.uniform(0.5, 2.0, C)
        out = batchnorm.batchnorm2d_forward_eval(
            x, w, b, running_mean, running_var, eps, r
        )
        dout = rng.standard_normal(x.shape)

        def numeric(
            x=x, w=w, b=b, rm=running_mean, rv=running_var, eps=eps, r=r, dout=dout
        ):
            def f(x, w, b):
                return batchnorm.batchnorm2d_forward_eval(x, w, b, rm, rv, eps, r)

            return {
                "dx": _gradient(lambda z: f(z, w, b), x, dout),
                "dweight": _gradient(lambda z: f(x, z, b), w, dout),
                "dbias": _gradient(lambda z: f(x, w, z), b, dout),
            }

        kwargs = {"out": out} if r else {}
        args = (dout, x, running_mean, running_var, w, eps)
        cases.append(Case(label, args, kwargs, numeric))
    return cases


# -- ReLU and dropout --------------------------------------------------------------
def _relu_inputs(seed):
    rng = np.random.default_rng(seed)
    yield "batch 1, odd size 3x5", _distinct((1, 2, 3, 5), rng), True
    yield "batch 2, 4x6", _distinct((2, 2, 4, 6), rng), True
    zeros = _ties((2, 2, 3, 3), rng) - 1.0
    zeros[0, 0, 0, :2] = [0.0, -0.0]
    yield "exact zeros (ReLU'(0) = 0)", zeros, False


def _relu_forward_cases():
    return [Case(label, (x,)) for label, x, _ in _relu_inputs(11)]


def _relu_backward_cases():
    rng = np.random.default_rng(12)
    cases = []
    for label, x, smooth in _relu_inputs(12):
        dout = rng.standard_normal(x.shape)
        numeric = None
        if smooth:

            def numeric(x=x, dout=dout):
                return {"dx": _gradient(relu.relu_forward, x, dout)}

        cases.append(Case(label, (dout, relu.relu_forward(x)), numeric=numeric))
    return cases


def _dropout_inputs(seed):
    rng = np.random.default_rng(seed)
    for label, shape, p in [
        ("p = 0.5", (2, 3, 4, 6), 0.5),
        ("batch 1, odd size 5x7, p = 0.2", (1, 2, 5, 7), 0.2),
        ("p = 0 (every unit kept)", (1, 2, 3, 3), 0.0),
    ]:
        x = rng.standard_normal(shape)
        yield label, x, dropout.dropout_mask(shape, p, rng), p


def _dropout_forward_cases():
    return [Case(label, (x, m, p)) for label, x, m, p in _dropout_inputs(13)]


def _dropout_backward_cases():
    rng = np.random.default_rng(14)
    cases = []
    for label, x, m, p in _dropout_inputs(14):
        dout = rng.standard_normal(x.shape)

        def numeric(x=x, m=m, p=p, dout=dout):
            f = lambda z: dropout.dropout_forward(z, m, p)  # noqa: E731
            return {"dx": _gradient(f, x, dout)}

        cases.append(Case(label, (dout, m, p), numeric=numeric))
    return cases


# -- the loss ----------------------------------------------------------------------
def _loss_inputs(seed):
    """(label, logits, targets, weight, ignore_index, dout, smooth)."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((1, 4, 3, 5))
    targets = rng.integers(0, 4, (1, 3, 5))
    yield "batch 1, 3x5, 4 classes", logits, targets, None, None, 1.0, True
    logits = rng.standard_normal((2, 3, 4, 5))
    targets = rng.integers(0, 3, (2, 4, 5))
    weight = np.array([0.5, 2.0, 1.25])
    yield "class weights (a weighted mean)", logits, targets, weight, None, 1.0, True
    targets = targets.copy()
    targets[0, :2] = 255
    yield (
        "ignore_index=255 on some pixels, with class weights",
        logits,
        targets,
        weight,
        255,
        1.0,
        True,
    )
    yield "upstream gradient dout = 2.5", logits, targets, weight, 255, 2.5, True
    big = 1e3 * rng.standard_normal((2, 3, 3, 3))
    targets = rng.integers(0, 3, (2, 3, 3))
    # no gradient check here: a step of 1e-6 on logits of 1e3 is lost in rounding
    yield (
        "huge logits (about 1e3: subtract the maximum before exp)",
        big,
        targets,
        None,
        None,
        1.0,
        False,
    )


def _loss_cases(seed, with_dout, numeric_key):
    cases = []
    for label, z, t, w, ii, dout, smooth in _loss_inputs(seed):
        if not with_dout and dout != 1.0:
            continue
        numeric = None
        if smooth and numeric_key:

            def numeric(z=z, t=t, w=w, ii=ii, dout=dout):
                def f(v):
                    return dout * loss.softmax_cross_entropy_forward(v, t, w, ii)

                return {numeric_key: numerical_gradient(f, z.copy(), h=H_STEP)}

        args = (z, t, w, ii, dout) if with_dout else (z, t, w, ii)
        cases.append(Case(label, args, numeric=numeric))
    return cases


# -- the registry ------------------------------------------------------------------
def _make(name, reference, outputs, cases):
    return Exercise(name, reference, tuple(outputs), cases)


EXERCISES: dict[str, Exercise] = {
    e.name: e
    for e in [
        _make("relu_forward", relu.relu_forward, ["out"], _relu_forward_cases),
        _make("relu_backward", relu.relu_backward, ["dx"], _relu_backward_cases),
        _make(
            "maxpool2d_forward",
            pool.maxpool2d_forward,
            ["out", "indices"],
            _maxpool2d_forward_cases,
        ),
        _make(
            "maxpool2d_backward",
            pool.maxpool2d_backward,
            ["dx"],
            _maxpool2d_backward_cases,
        ),
        _make(
            "maxunpool2d_forward",
            pool.maxunpool2d_forward,
            ["out"],
            _maxunpool2d_forward_cases,
        ),
        _make(
            "maxunpool2d_backward",
            pool.maxunpool2d_backward,
            ["dx"],
            _maxunpool2d_backward_cases,
        ),
        _make("conv2d_forward", conv.conv2d_forward, ["out"], _conv2d_forward_cases),
        _make(
            "conv2d_backward",
            conv.conv2d_backward,
            ["dx", "dweight", "dbias"],
            _conv2d_backward_cases,
        ),
        _make(
            "batchnorm2d_forward_train",
            batchnorm.batchnorm2d_forward_train,
            ["out", "mean", "var", "inv_std"],
            _batchnorm2d_forward_train_cases,
        ),
        _make(
            "batchnorm2d_forward_eval",
            batchnorm.batchnorm2d_forward_eval,
            ["out"],
            _batchnorm2d_forward_eval_cases,
        ),
        _make(
            "batchnorm2d_backward",
            batchnorm.batchnorm2d_backward,
            ["dx", "dweight", "dbias"],
            _batchnorm2d_backward_cases,
        ),
        _make(
            "batchnorm2d_backward_eval",
            batchnorm.batchnorm2d_backward_eval,
            ["dx", "dweight", "dbias"],
            _batchnorm2d_backward_eval_cases,
        ),
        _make(
            "dropout_forward", dropout.dropout_forward, ["out"], _dropout_forward_cases
        ),
        _make(
            "dropout_backward",
            dropout.dropout_backward,
            ["dx"],
            _dropout_backward_cases,
        ),
        _make(
            "softmax_cross_entropy_forward",
            loss.softmax_cross_entropy_forward,
            ["loss"],
            lambda: _loss_cases(15, False, None),
        ),
        _make(
            "softmax_cross_entropy_backward",
            loss.softmax_cross_entropy_backward,
            ["dlogits"],
            lambda: _loss_cases(16, True, "dlogits"),
        ),
        _make(
            "softmax_cross_entropy_fused",
            loss.softmax_cross_entropy_fused,
            ["loss", "dlogits"],
            lambda: _loss_cases(17, False, "dlogits"),
        ),
    ]
}


def names() -> list[str]:
    """The exercises :func:`~npsegnet.exercises.grade` knows, in teaching order."""
    return list(EXERCISES)


def get(name) -> Exercise:
    """The exercise called ``name``; a ``ValueError`` lists the valid names."""
    if isinstance(name, str) and name in EXERCISES:
        return EXERCISES[name]
    close = get_close_matches(str(name), EXERCISES, n=1)
    guess = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown exercise {name!r}.{guess} Valid names (the functions of "
        f"npsegnet.reference): {', '.join(EXERCISES)}"
    )
