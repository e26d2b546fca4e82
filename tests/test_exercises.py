"""The exercise grader passes right answers and catches the usual wrong ones.

Each "student" below is a small function written the way a student would:
plain loops, the reference's signature. A ``mistake`` flag switches on one
classic error, and the tests check that the grader fails it *on the case meant
to catch it* (ties, overlapping windows, padding, the 1/N of a mean) while the
correct version passes.
"""

from __future__ import annotations

import doctest
import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from tolerances import assert_close

from npsegnet import reference
from npsegnet.exercises import (
    SOLUTIONS_ENV,
    ExerciseFailed,
    exercise,
    grade,
    grading,
    names,
    summary,
)
from npsegnet.reference.pool import pool_output_size

REFERENCES = {
    name: getattr(getattr(reference, module), name)
    for module in ("batchnorm", "conv", "dropout", "loss", "pool", "relu")
    for name in dir(getattr(reference, module))
    if name in names()
}


# -- students ----------------------------------------------------------------------
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def make_maxpool2d_forward(mistake=None):
    """Loops over windows; ``"last max"``: ``>=`` lets a later tie win;
    ``"window index"``: the index counts within the window, not the plane;
    ``"floor only"``: ignores ``ceil_mode``."""

    def maxpool2d_forward(x, kernel_size, stride, ceil_mode=False):
        (KH, KW), (SH, SW) = _pair(kernel_size), _pair(stride)
        N, C, H, W = x.shape
        ceil = ceil_mode and mistake != "floor only"
        H_out = pool_output_size(H, KH, SH, ceil)
        W_out = pool_output_size(W, KW, SW, ceil)
        out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
        indices = np.empty((N, C, H_out, W_out), dtype=np.int64)
        for n in range(N):
            for c in range(C):
                for i in range(H_out):
                    for j in range(W_out):
                        best, arg = -np.inf, 0
                        for h in range(i * SH, min(i * SH + KH, H)):
                            for w in range(j * SW, min(j * SW + KW, W)):
                                v = x[n, c, h, w]
                                if v > best or (mistake == "last max" and v == best):
                                    best = v
                                    arg = h * W + w
                                    if mistake == "window index":
                                        arg = (h - i * SH) * KW + (w - j * SW)
                        out[n, c, i, j], indices[n, c, i, j] = best, arg
        return out, indices

    return maxpool2d_forward


def make_maxpool2d_backward(mistake=None):
    """``"="``: assigns instead of adding, so overlapping windows overwrite."""

    def maxpool2d_backward(dout, indices, input_shape):
        N, C, H, W = input_shape
        dx = np.zeros((N, C, H * W), dtype=dout.dtype)
        for n in range(N):
            for c in range(C):
                for i, j in np.ndindex(*dout.shape[2:]):
                    if mistake == "=":
                        dx[n, c, indices[n, c, i, j]] = dout[n, c, i, j]
                    else:
                        dx[n, c, indices[n, c, i, j]] += dout[n, c, i, j]
        return dx.reshape(N, C, H, W)

    return maxpool2d_backward


def make_conv2d_forward(mistake=None):
    """One window at a time; ``"one side"`` pads only the bottom and right,
    ``"all axes"`` calls ``np.pad(x, padding)``, padding N and C too."""

    def conv2d_forward(x, weight, bias, padding):
        p = padding
        if mistake == "one side":
            xp = np.pad(x, ((0, 0), (0, 0), (0, 2 * p), (0, 2 * p)))
        elif mistake == "all axes":
            xp = np.pad(x, p)
        else:
            xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        F, _, KH, KW = weight.shape
        H_out, W_out = xp.shape[2] - KH + 1, xp.shape[3] - KW + 1
        out = np.zeros((xp.shape[0], F, H_out, W_out))
        for i in range(H_out):
            for j in range(W_out):
                window = xp[:, :, i : i + KH, j : j + KW]
                out[:, :, i, j] = np.tensordot(window, weight, ([1, 2, 3], [1, 2, 3]))
        if bias is not None:
            out += bias[None, :, None, None]
        return out

    return conv2d_forward


def make_batchnorm2d_backward(mistake=None):
    """The compact formula; ``"no 1/M"`` forgets that the mean terms average."""

    def batchnorm2d_backward(dout, x, mean, inv_std, weight, out=None, relu_bias=None):
        g = dout if out is None else np.where(out > 0, dout, 0.0)
        M = x.shape[0] * x.shape[2] * x.shape[3]
        mean, inv_std, weight = (
            v[None, :, None, None] for v in (mean, inv_std, weight)
        )
        x_hat = (x - mean) * inv_std
        dbias = g.sum(axis=(0, 2, 3))
        dweight = (g * x_hat).sum(axis=(0, 2, 3))
        db, dw = dbias[None, :, None, None], dweight[None, :, None, None]
        if mistake == "no 1/M":
            dx = weight * inv_std * (g - db - x_hat * dw)
        else:
            dx = weight * inv_std * (g - db / M - x_hat * dw / M)
        return dx, dweight, dbias

    return batchnorm2d_backward


def _softmax_parts(logits, targets, weight, ignore_index):
    K = logits.shape[1]
    w = np.ones(K) if weight is None else weight
    keep = (
        np.ones(targets.shape, bool)
        if ignore_index is None
        else (targets != ignore_index)
    )
    t = np.where(keep, targets, 0)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    onehot = np.moveaxis(np.eye(K)[t], -1, 1)
    return p, onehot, np.where(keep, w[t], 0.0)


def make_softmax_cross_entropy_forward(mistake=None):
    """``"sum"``: the sum of the pixel losses, not their weighted mean;
    ``"log of softmax"``: log(p) underflows to -inf where p rounds to 0."""

    def softmax_cross_entropy_forward(logits, targets, weight=None, ignore_index=None):
        p, onehot, pixel_w = _softmax_parts(logits, targets, weight, ignore_index)
        if mistake == "log of softmax":
            with np.errstate(divide="ignore"):
                nll = -np.log((p * onehot).sum(axis=1))
        else:
            z = logits - logits.max(axis=1, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            nll = -(log_p * onehot).sum(axis=1)
        total = (pixel_w * nll).sum()
        return float(total if mistake == "sum" else total / pixel_w.sum())

    return softmax_cross_entropy_forward


def make_softmax_cross_entropy_backward(mistake=None):
    """``"no 1/N"``: the gradient of the sum, not of the weighted mean."""

    def softmax_cross_entropy_backward(
        logits, targets, weight=None, ignore_index=None, dout=1.0
    ):
        p, onehot, pixel_w = _softmax_parts(logits, targets, weight, ignore_index)
        g = dout * pixel_w[:, None] * (p - onehot)
        return g if mistake == "no 1/N" else g / pixel_w.sum()

    return softmax_cross_entropy_backward


def _failed_cases(result):
    return {c.case for c in result.checks if not c.passed}


def _passed_cases(result):
    return {c.case for c in result.checks if c.passed}


# -- right answers pass ------------------------------------------------------------
def test_every_exercise_is_a_reference_function():
    assert sorted(REFERENCES) == sorted(names())


@pytest.mark.parametrize("name", names())
def test_grading_the_reference_passes(name):
    result = grade(name, REFERENCES[name])
    assert result, str(result)
    assert result.passed and result.first_failure is None
    assert "PASS" in str(result)
    differentiates = name.endswith(("_backward", "_backward_eval", "_fused"))
    kinds = {c.check for c in result.checks}
    assert kinds == ({"output", "gradient"} if differentiates else {"output"})


KERNELS = {
    name: getattr(importlib.import_module(f"npsegnet.kernels.{module}"), name)
    for module in ("batchnorm", "conv", "dropout", "loss", "pool", "relu")
    for name in names()
    if hasattr(importlib.import_module(f"npsegnet.kernels.{module}"), name)
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_grading_the_kernel_twins_passes(name):
    """The Numba twins round differently from the references and still pass."""
    result = grade(name, KERNELS[name])
    assert result, str(result)


@pytest.mark.parametrize(
    "name, student",
    [
        ("maxpool2d_forward", make_maxpool2d_forward()),
        ("maxpool2d_backward", make_maxpool2d_backward()),
        ("conv2d_forward", make_conv2d_forward()),
        ("batchnorm2d_backward", make_batchnorm2d_backward()),
        ("softmax_cross_entropy_forward", make_softmax_cross_entropy_forward()),
        ("softmax_cross_entropy_backward", make_softmax_cross_entropy_backward()),
    ],
)
def test_a_correct_student_passes(name, student):
    assert grade(name, student)


def test_student_conv_agrees_with_the_reference_up_to_rounding(rng):
    """What OUTPUT_TOL (1e-9) leaves room for: another summation order."""
    x = rng.standard_normal((2, 3, 5, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    assert_close(
        make_conv2d_forward()(x, w, b, 1),
        reference.conv.conv2d_forward(x, w, b, 1),
        reduction=3 * 3 * 3,
        scale=float(np.abs(x).max() * np.abs(w).max()),
    )


# -- the usual mistakes fail, on the case that catches them ------------------------
def test_last_max_wins_ties_fails_on_the_tie_cases():
    result = grade("maxpool2d_forward", make_maxpool2d_forward("last max"))
    assert not result
    failed = _failed_cases(result)
    assert failed and all("tied" in case for case in failed), failed
    assert "indices differ from the reference" in str(result)
    assert "tied" in result.first_failure.case


def test_assigning_instead_of_adding_fails_where_windows_overlap():
    result = grade("maxpool2d_backward", make_maxpool2d_backward("="))
    assert not result
    failed = _failed_cases(result)
    assert "one maximum shared by four 3x3 stride 2 windows" in failed
    assert "2x2 stride 2" in _passed_cases(result)  # no overlap: = and += agree
    assert all("3x3" in case or "(2, 3)" in case for case in failed), failed
    kinds = {c.check for c in result.checks if not c.passed}
    assert kinds == {"output", "gradient"}  # both checks see it


def test_index_within_the_window_fails():
    result = grade("maxpool2d_forward", make_maxpool2d_forward("window index"))
    assert not result
    assert result.first_failure.case == "2x2 stride 2"
    assert "indices differ" in result.first_failure.message


@pytest.mark.parametrize("mistake", ["sum", None])
def test_loss_forward_without_the_mean(mistake):
    result = grade(
        "softmax_cross_entropy_forward", make_softmax_cross_entropy_forward(mistake)
    )
    assert bool(result) is (mistake is None)


def test_loss_forward_taking_the_log_of_the_softmax_fails_on_huge_logits():
    student = make_softmax_cross_entropy_forward("log of softmax")
    result = grade("softmax_cross_entropy_forward", student)
    assert _failed_cases(result) == {
        "huge logits (about 1e3: subtract the maximum before exp)"
    }
    assert "loss holds inf" in result.first_failure.message


def test_loss_backward_without_1_over_N_fails_the_gradient_check():
    result = grade(
        "softmax_cross_entropy_backward", make_softmax_cross_entropy_backward("no 1/N")
    )
    assert not result
    assert {c.check for c in result.checks if not c.passed} == {"output", "gradient"}
    assert result.max_error > 0.5


def test_batchnorm_backward_without_1_over_M_fails():
    result = grade("batchnorm2d_backward", make_batchnorm2d_backward("no 1/M"))
    assert not result
    assert result.first_failure.message.startswith("dx: relative error")
    # dweight and dbias do not involve M: only dx is reported
    assert "dweight" not in result.first_failure.message


def test_conv_padded_on_one_side_fails_where_there_is_padding():
    result = grade("conv2d_forward", make_conv2d_forward("one side"))
    assert not result
    for c in result.checks:
        assert c.passed == ("padding" not in c.case or "padding 0" in c.case), c.case


def test_conv_padding_every_axis_is_reported_where_it_raises():
    result = grade("conv2d_forward", make_conv2d_forward("all axes"))
    assert not result and not result.not_implemented
    first = result.first_failure
    assert first.case == "3x3, padding 1, odd size 5x7, batch 1"
    assert "conv2d_forward raised ValueError" in first.message
    assert "in conv2d_forward: out[:, :, i, j] = np.tensordot(" in first.message


def test_ignoring_ceil_mode_reports_the_shape():
    result = grade("maxpool2d_forward", make_maxpool2d_forward("floor only"))
    assert _failed_cases(result) == {
        "odd size 5x7, ceil_mode=True (windows hang over the edge)"
    }
    message = result.first_failure.message
    assert "out has shape (1, 2, 2, 3), expected (1, 2, 3, 4)" in message


# -- the report --------------------------------------------------------------------
def test_report_shows_the_first_failure_with_its_small_input():
    result = grade("maxpool2d_forward", make_maxpool2d_forward("last max"))
    text = str(result)
    assert text.startswith("maxpool2d_forward: FAIL, ")
    assert "First failure: tied maxima 2x2 stride 2 (the first one wins)" in text
    assert "    x: float64 (2, 2, 4, 6) =\n    [[[[" in text  # 96 values: printed
    assert "see below" in text  # no float error tells an index mismatch
    first = result.first_failure
    assert first.shape == (2, 2, 4, 6)
    assert first.inputs["kernel_size"] == 2 and first.inputs["ceil_mode"] is False
    assert repr(result) == text


def test_report_prints_arrays_up_to_120_values():
    result = grade("maxpool2d_forward", make_maxpool2d_forward("window index"))
    assert "x: float64 (2, 3, 4, 6) (too large to print)" in str(result)
    result = grade("relu_forward", lambda x: np.abs(x))
    assert "x: float64 (1, 2, 3, 5) =" in str(result)  # 30 values
    assert "largest difference at (0, " in str(result)


def test_not_implemented_is_a_message_not_a_crash():
    def relu_forward(x):
        raise NotImplementedError

    result = grade("relu_forward", relu_forward)
    assert not result and result.not_implemented
    assert "not implemented yet" in str(result)
    assert "Traceback" not in str(result)


def test_other_exceptions_say_what_and_where():
    def maxpool2d_backward(dout, indices, input_shape):
        dx = np.zeros(input_shape)
        dx[0, 0, 99] = 1.0
        return dx

    result = grade("maxpool2d_backward", maxpool2d_backward)
    assert not result and not result.not_implemented
    message = result.first_failure.message
    assert "raised IndexError" in message
    assert "in maxpool2d_backward: dx[0, 0, 99] = 1.0" in message


def test_raise_on_fail_raises_an_assertion_error_with_the_report():
    with pytest.raises(ExerciseFailed, match="maxpool2d_forward: FAIL") as info:
        grade(
            "maxpool2d_forward", make_maxpool2d_forward("last max"), raise_on_fail=True
        )
    assert isinstance(info.value, AssertionError)
    assert grade("relu_forward", reference.relu.relu_forward, raise_on_fail=True)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown exercise 'maxpool_forward'") as info:
        grade("maxpool_forward", make_maxpool2d_forward())
    message = str(info.value)
    assert "Did you mean 'maxpool2d_forward'?" in message
    assert all(name in message for name in names())


def test_not_a_function_is_a_type_error():
    with pytest.raises(TypeError, match="fn must be a function"):
        grade("relu_forward", np.zeros(3))


def test_wrong_signature_is_explained():
    result = grade("maxpool2d_forward", lambda x, kernel_size: x)
    assert "cannot take the reference's arguments" in result.first_failure.message
    assert "(x, kernel_size, stride, ceil_mode=False)" in result.first_failure.message


def test_wrong_number_of_outputs_is_explained():
    result = grade(
        "maxpool2d_forward",
        lambda x, k, s, ceil_mode=False: make_maxpool2d_forward()(x, k, s, ceil_mode)[
            0
        ],
    )
    assert "should return 2 values (out, indices), it returned one ndarray" in str(
        result
    )


def test_changing_the_input_in_place_fails():
    def relu_forward(x):
        x[x < 0] = 0.0
        return x

    result = grade("relu_forward", relu_forward)
    assert not result
    assert "changed its input x in place" in result.first_failure.message


def test_float32_output_fails_with_a_dtype_message():
    result = grade("relu_forward", lambda x: np.maximum(x, 0).astype(np.float32))
    assert "has dtype float32, expected float64" in result.first_failure.message


def test_relu_derivative_at_zero_is_checked():
    result = grade("relu_backward", lambda dout, out: np.where(out >= 0, dout, 0.0))
    assert not result


def test_nan_output_fails():
    result = grade("relu_forward", lambda x: np.where(x > 0, x, np.nan))
    assert not result and "holds nan" in result.first_failure.message


# -- the notebook switch and the summary -------------------------------------------
def test_exercise_decorator_swaps_in_the_reference_only_when_asked(monkeypatch):
    def relu_forward(x):
        raise NotImplementedError

    monkeypatch.setenv(SOLUTIONS_ENV, "1")
    assert exercise(relu_forward) is reference.relu.relu_forward
    monkeypatch.setenv(SOLUTIONS_ENV, "0")
    assert exercise(relu_forward) is relu_forward
    monkeypatch.delenv(SOLUTIONS_ENV)
    assert exercise(relu_forward) is relu_forward


def test_exercise_decorator_rejects_a_misspelt_stub():
    def relu_forwards(x):
        raise NotImplementedError

    with pytest.raises(ValueError, match="Did you mean 'relu_forward'"):
        exercise(relu_forwards)


def test_summary_lists_the_latest_grades_and_is_strict_on_request(monkeypatch):
    monkeypatch.setattr(grading, "_GRADED", {})  # forget the other tests' grades
    grade("relu_forward", reference.relu.relu_forward)
    grade("relu_backward", lambda dout, out: dout)
    board = summary(strict=False)
    assert not board
    text = str(board)
    assert "relu_forward                    pass" in text
    assert "relu_backward                   FAIL" in text
    with pytest.raises(ExerciseFailed):
        summary(strict=True)
    grade("relu_backward", reference.relu.relu_backward)
    assert summary(strict=True)


def test_docstring_examples():
    result = doctest.testmod(grading, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- the exercise notebook ---------------------------------------------------------
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "07_exercises.ipynb"


def _code_cells():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_notebook_stubs_raise_and_are_each_followed_by_their_grade():
    """Committed for the student: every stub unfilled, every grade right below."""
    cells = [("".join(c["source"]), c) for c in _code_cells()]
    stubs = [i for i, (src, _) in enumerate(cells) if src.startswith("@exercise")]
    assert len(stubs) >= 10
    for i in stubs:
        src, _ = cells[i]
        name = re.match(r"@exercise\ndef (\w+)\(", src).group(1)
        assert name in names()
        assert src.rstrip().endswith("raise NotImplementedError"), name
        grade_src, grade_cell = cells[i + 1]
        assert grade_src == f'grade("{name}", {name})'
        shown = "".join(grade_cell["outputs"][0]["data"]["text/plain"])
        assert shown.startswith(f"{name}: not implemented yet"), shown
    assert cells[-2][0] == "summary()"  # CI: raises when a grade fails
