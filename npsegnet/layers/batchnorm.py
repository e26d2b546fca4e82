"""Batch normalisation over channels (``BatchNorm2D``), as PyTorch's BatchNorm2d."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_float_array, check_positive_int
from ..config import DEFAULT_DTYPE
from ..kernels.batchnorm import (
    batchnorm2d_backward,
    batchnorm2d_backward_eval,
    batchnorm2d_forward_eval,
    batchnorm2d_forward_train,
)
from .base import Module


class BNTrainCache(NamedTuple):
    """What a training-mode forward keeps for :meth:`BatchNorm2D.backward`."""

    x: np.ndarray  # the input, (N, C, H, W)
    mean: np.ndarray  # the batch mean, (C,)
    inv_std: np.ndarray  # 1 / sqrt(batch variance + eps), (C,)
    # with the fused ReLU: a copy of the bias (C numbers, not a whole map);
    # backward rebuilds the ReLU's mask from x. None without the ReLU.
    relu_bias: np.ndarray | None


class BNEvalCache(NamedTuple):
    """What an evaluation-mode forward keeps for :meth:`BatchNorm2D.backward`."""

    x: np.ndarray  # the input, (N, C, H, W)
    mean: np.ndarray  # a copy of running_mean as used in forward, (C,)
    running_var: np.ndarray  # a copy of running_var as used in forward, (C,)
    out: np.ndarray | None  # with the fused ReLU: the output (its mask); else None


class BatchNorm2D(Module):
    """Batch normalisation of each channel of an NCHW batch (Ioffe & Szegedy 2015).

    Parameters
    ----------
    num_features : int
        Number of channels ``C``.
    eps : float
        Added to the variance before the square root (a constant channel gives
        ``x_hat = 0``, not NaN).
    momentum : float or None
        Weight of the new batch in the running statistics, in [0, 1]
        (PyTorch's convention: ``running = (1 - momentum) * running +
        momentum * batch``). ``None`` gives the cumulative moving average of all
        batches since the last :meth:`reset_running_stats`, each batch counting
        equally (PyTorch's ``momentum=None``).
    dtype : dtype
        float32 (default) or float64.
    relu : bool
        Fuse a ReLU after the affine map (``max(out, 0)``), saving one pass over
        the activations each way; ReLU'(0) = 0 as everywhere.

    Attributes
    ----------
    params : ``"weight"`` (ones) and ``"bias"`` (zeros), shape (C,).
    buffers : ``"running_mean"`` (zeros), ``"running_var"`` (ones), shape (C,),
        updated **in place** in training mode; ``"num_batches_tracked"``, a 0-d
        int64 array (it stays int64 under :meth:`astype`), as in PyTorch's
        state dicts.

    Notes
    -----
    Training mode normalises with the batch mean and the biased batch variance
    (divide by ``M = N * H * W``) and updates ``running_mean`` with the mean and
    ``running_var`` with the *unbiased* variance (``* M / (M - 1)``), as
    PyTorch; it needs ``M > 1``. Evaluation mode applies the running statistics.

    *Recomputing the statistics before testing.* SegNet-Tutorial's
    ``Scripts/compute_bn_statistics.py`` runs the trained network over the
    training set, averages every layer's batch means and batch variances with
    equal weight per batch, multiplies the averaged variance by ``m / (m - 1)``,
    and folds the result into the layer's scale and shift (with ``eps = 1e-9``).
    The same statistics come out of this layer: call
    :meth:`reset_running_stats`, set ``momentum = None``, run the training
    batches through the network in training mode (no backward pass needed),
    then switch to eval mode. The cumulative average of the unbiased batch
    variances equals their average of the biased ones times ``m / (m - 1)``
    when all batches have the same size. Differences that remain: we keep the
    statistics in the buffers instead of folding them into ``weight`` and
    ``bias`` (the same affine map), eval uses this layer's ``eps`` (1e-5) rather
    than 1e-9, and they average over ``train_size // batch + train_size % batch``
    batches (a few images seen twice), we over whatever batches we are given.

    Shape
    -----
    ``forward(x)`` with ``x`` of shape (N, C, H, W) returns the same shape.
    """

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        dtype=DEFAULT_DTYPE,
        relu=False,
    ):
        super().__init__(dtype=dtype)
        if self.dtype.name not in ("float32", "float64"):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.num_features = check_positive_int(num_features, "num_features")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)):
            raise TypeError(f"eps must be a float, got {type(eps).__name__}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = float(eps)
        if momentum is not None:
            if isinstance(momentum, bool) or not isinstance(
                momentum, (int, float, np.floating)
            ):
                raise TypeError(
                    f"momentum must be a float in [0, 1] or None, "
                    f"got {type(momentum).__name__}"
                )
            if not 0.0 <= momentum <= 1.0:
                raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
            momentum = float(momentum)
        self.momentum = momentum
        self.relu = bool(relu)
        C = self.num_features
        self.add_param("weight", np.ones(C))
        self.add_param("bias", np.zeros(C))
        self.add_buffer("running_mean", np.zeros(C))
        self.add_buffer("running_var", np.ones(C))
        # a 0-d int64 counter, set directly: add_buffer would make it float (C,)
        self._buffers["num_batches_tracked"] = np.zeros((), np.int64)
        self.cache: BNTrainCache | BNEvalCache | None = None

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, batch count 0 (in place)."""
        self._buffers["running_mean"].fill(0)
        self._buffers["running_var"].fill(1)
        self._buffers["num_batches_tracked"].fill(0)

    @property
    def num_batches_tracked(self) -> int:
        """Training batches seen since construction or the last reset."""
        return int(self._buffers["num_batches_tracked"])

    def astype(self, dtype) -> BatchNorm2D:
        """Convert parameters, gradients and running statistics to ``dtype``."""
        count = self._buffers.pop("num_batches_tracked")
        super().astype(dtype)
        self._buffers["num_batches_tracked"] = count
        self.cache = None
        return self

    def forward(self, x):
        """Normalise ``x``.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)
            In the layer's dtype.

        Returns
        -------
        out : ndarray of shape (N, C, H, W)
        """
        x = check_float_array(x, "x", ndim=4, dtype=self.dtype)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"x has {x.shape[1]} channels but the layer was built for "
                f"num_features={self.num_features} (x shape {x.shape})"
            )
        w, b = self._params["weight"], self._params["bias"]
        rm, rv = self._buffers["running_mean"], self._buffers["running_var"]
        if self.training:
            M = x.shape[0] * x.shape[2] * x.shape[3]
            if M < 2:
                raise ValueError(
                    "training-mode batch norm needs more than 1 value per channel "
                    f"(N * H * W > 1), got x shape {x.shape}"
                )
            out, mean, var, inv_std = batchnorm2d_forward_train(
                x, w, b, self.eps, self.relu, **self._reused(out=(x.shape, x.dtype))
            )
            self._update_running(mean, var, M)
            self.cache = BNTrainCache(x, mean, inv_std, b.copy() if self.relu else None)
        else:
            out = batchnorm2d_forward_eval(
                x,
                w,
                b,
                rm,
                rv,
                self.eps,
                self.relu,
                **self._reused(out=(x.shape, x.dtype)),
            )
            relu_out = out if self.relu else None
            self.cache = BNEvalCache(x, rm.copy(), rv.copy(), relu_out)
        return out

    def _update_running(self, mean, var, M) -> None:
        """Blend the batch statistics into the running ones, in place."""
        count = self._buffers["num_batches_tracked"]
        count += 1
        f = 1.0 / float(count) if self.momentum is None else self.momentum
        unbiased = var.astype(np.float64) * (M / (M - 1))
        for key, batch in (("running_mean", mean), ("running_var", unbiased)):
            buf = self._buffers[key]
            buf[...] = (1.0 - f) * buf.astype(np.float64) + f * batch

    def backward(self, dout):
        """Input gradient; accumulates ``grads["weight"]`` and ``grads["bias"]``.

        Parameters
        ----------
        dout : ndarray of shape (N, C, H, W)

        Returns
        -------
        dx : ndarray of shape (N, C, H, W)
            In training mode this includes the paths through the batch mean and
            variance; in evaluation mode the statistics are constants.
        """
        cache = self.cache
        if cache is None:
            raise RuntimeError("BatchNorm2D.backward called before forward")
        w = self._params["weight"]
        dx = self._reused(dx=(cache.x.shape, cache.x.dtype))
        if isinstance(cache, BNTrainCache):
            dx, dweight, dbias = batchnorm2d_backward(
                dout,
                cache.x,
                cache.mean,
                cache.inv_std,
                w,
                relu_bias=cache.relu_bias,
                **dx,
            )
        else:
            dx, dweight, dbias = batchnorm2d_backward_eval(
                dout,
                cache.x,
                cache.mean,
                cache.running_var,
                w,
                self.eps,
                cache.out,
                **dx,
            )
        self._grads["weight"] += dweight
        self._grads["bias"] += dbias
        return dx

    def __repr__(self) -> str:
        extra = ", relu=True" if self.relu else ""
        return (
            f"BatchNorm2D({self.num_features}, eps={self.eps:g}, "
            f"momentum={self.momentum}, dtype={self.dtype.name}{extra})"
        )
