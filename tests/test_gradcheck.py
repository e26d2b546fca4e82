"""Tests of npsegnet.gradcheck itself: the checker must pass right and fail wrong."""

from __future__ import annotations

import numpy as np
import pytest

from npsegnet.gradcheck import (
    GradCheckReport,
    GradCheckRow,
    check_layer,
    numerical_gradient,
    numerical_gradient_array,
    rel_error,
)
from npsegnet.layers import Module, ReLU


class Scale(Module):
    """y = w * x + b per channel; ``wrong`` breaks one gradient on purpose."""

    def __init__(self, C, wrong=None):
        super().__init__(dtype=np.float64)
        self.add_param("weight", np.linspace(0.5, 2.0, C))
        self.add_param("bias", np.zeros(C))
        self.wrong = wrong

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError("x must be 4-d")
        self.x = x.copy()
        w = self.params["weight"].reshape(1, -1, 1, 1)
        b = self.params["bias"].reshape(1, -1, 1, 1)
        return w * x + b

    def backward(self, dout):
        w = self.params["weight"].reshape(1, -1, 1, 1)
        dweight = (dout * self.x).sum(axis=(0, 2, 3))
        dbias = dout.sum(axis=(0, 2, 3))
        dx = dout * w
        if self.wrong == "x":
            dx = dx * 1.01
        elif self.wrong == "weight":
            dweight = dweight + 1e-3
        elif self.wrong == "bias":
            dbias = 0 * dbias
        elif self.wrong == "nan":
            dx = dx * np.nan
        self.grads["weight"] += dweight
        self.grads["bias"] += dbias
        return dx


class SquareLoss(Module):
    """A loss returning a float: 0.5 * sum(x**2), gradient dout * x."""

    def forward(self, x):
        self.x = x
        return float(0.5 * np.sum(x**2))

    def backward(self, dout=1.0):
        return dout * self.x


# -- numerical gradients ------------------------------------------------------
def test_numerical_gradient_known_functions(rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(
        numerical_gradient(lambda z: np.sum(z**2), x), 2 * x, atol=1e-8
    )
    np.testing.assert_allclose(
        numerical_gradient(lambda z: np.sum(np.sin(z)), x), np.cos(x), atol=1e-8
    )


def test_numerical_gradient_restores_x_and_samples_entries(rng):
    x = rng.standard_normal(10)
    before = x.copy()
    g = numerical_gradient(lambda z: np.sum(z**3), x, entries=np.array([2, 7]))
    np.testing.assert_array_equal(x, before)  # bit for bit
    assert np.count_nonzero(g) == 2
    np.testing.assert_allclose(g[[2, 7]], 3 * x[[2, 7]] ** 2, rtol=1e-7)


def test_numerical_gradient_needs_contiguous(rng):
    x = rng.standard_normal((4, 4))[:, :2]  # no flat view exists
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(np.sum, x)


def test_numerical_gradient_array_of_linear_map(rng):
    A = rng.standard_normal((5, 3))
    x = rng.standard_normal(3)
    dout = rng.standard_normal(5)
    np.testing.assert_allclose(
        numerical_gradient_array(lambda z: A @ z, x, dout), A.T @ dout, atol=1e-8
    )


# -- rel_error ----------------------------------------------------------------
def test_rel_error_properties(rng):
    a = rng.standard_normal(20)
    b = a + 1e-3 * rng.standard_normal(20)
    assert rel_error(a, a) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(a, b) == pytest.approx(rel_error(b, a))  # symmetric
    assert rel_error(1e6 * a, 1e6 * b) == pytest.approx(rel_error(a, b))  # scale-free
    assert rel_error(a, -a) == pytest.approx(1.0)  # the maximum
    assert rel_error(a, np.zeros_like(a)) == pytest.approx(1.0)
    assert 0 < rel_error(a, b) < 1
    assert np.isnan(rel_error(a, a * np.nan))
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.zeros(3), np.zeros(4))


# -- check_layer --------------------------------------------------------------
def test_correct_layer_passes(rng):
    x = rng.standard_normal((2, 3, 2, 2))
    report = check_layer(Scale(3), x)
    assert report.passed
    assert [r.name for r in report.rows] == ["x", "weight", "bias"]
    assert report.max_error < 1e-9
    # parameters are perturbed while the forward pass still receives x
    assert [r.checked for r in report.rows] == [24, 3, 3]


@pytest.mark.parametrize("wrong", ["x", "weight", "bias", "nan"])
def test_wrong_backward_fails(rng, wrong):
    x = rng.standard_normal((2, 3, 2, 2))
    report = check_layer(Scale(3, wrong=wrong), x)
    assert not report.passed
    failing = [r.name for r in report.rows if not r.rel_error < report.tol]
    assert failing == ["x" if wrong == "nan" else wrong]
    with pytest.raises(AssertionError, match="FAIL"):
        report.assert_ok()


def test_huge_step_fails(rng):
    # a smooth but curved function: h = 1 makes centred differences wrong
    x = rng.standard_normal((1, 1, 2, 3))
    x = np.sign(x) * (np.abs(x) + 2)
    assert check_layer(SquareLoss(), x).passed  # quadratic: exact for any h
    report = check_layer(_Cube(), x, h=1.0)
    assert not report.passed
    assert check_layer(_Cube(), x).passed


class _Cube(Module):
    def forward(self, x):
        self.x = x
        return x**3

    def backward(self, dout):
        return 3 * self.x**2 * dout


def test_loss_and_relu(rng):
    x = rng.standard_normal((2, 2, 3, 3))
    assert check_layer(SquareLoss(), x).passed
    xr = np.array([[[[-1.0, 0.5], [2.0, -0.3]]]])
    assert check_layer(ReLU(), xr).passed  # the docstring example


def test_max_entries_and_params_flag(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    report = check_layer(Scale(3), x, max_entries=5)
    assert report.rows[0].checked == 5 and report.passed
    report = check_layer(Scale(3), x, params=False)
    assert [r.name for r in report.rows] == ["x"]


def test_float32_input_is_refused():
    with pytest.raises(TypeError, match="float64"):
        check_layer(Scale(1), np.zeros((1, 1, 2, 2), np.float32))


# -- the report ---------------------------------------------------------------
def test_report_formatting():
    report = GradCheckReport(
        "Toy",
        [GradCheckRow("x", (2, 3), 3e-11, 6), GradCheckRow("weight", (3,), 0.2, 3)],
        tol=1e-7,
    )
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "gradient check of Toy (pass: rel. error < 1e-07)"
    assert "x" in lines[2] and "3.00e-11" in lines[2] and lines[2].endswith("ok")
    assert "weight" in lines[3] and "2.00e-01" in lines[3] and lines[3].endswith("FAIL")
    assert repr(report) == text
    html = report._repr_html_()
    assert "<table>" in html and "FAIL" in html and "<b>Toy</b>" in html
    assert report["weight"] == 0.2
    with pytest.raises(KeyError):
        report["bias"]
    assert report.max_error == 0.2 and not report.passed


def test_nan_error_never_passes():
    report = GradCheckReport(
        "Toy",
        [GradCheckRow("x", (1,), 1e-12, 1), GradCheckRow("w", (1,), float("nan"), 1)],
    )
    assert np.isnan(report.max_error)
    assert not report.passed
    assert not GradCheckReport("Empty").passed  # nothing checked is no pass
