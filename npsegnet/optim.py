"""Stochastic gradient descent with momentum, as SegNet was trained.

The SegNet-Tutorial solvers use Caffe's SGD with a fixed learning rate,
momentum 0.9 and weight decay 5e-4, and every convolution declares two
parameter blocks: the weight (``lr_mult: 1, decay_mult: 1``) and the bias
(``lr_mult: 2, decay_mult: 0``). Its ``BN`` layers declare none, so Caffe's
defaults (``lr_mult: 1, decay_mult: 1``) apply to the batch-norm scale and
shift: they are learnt at the base rate *and* decayed. :class:`SGD` reproduces
that: biases listed in ``bias_keys`` get ``bias_lr_mult`` and
``bias_decay_mult``, every other array gets multipliers 1 and 1.
:func:`caffe_bias_keys` lists the convolution biases of a model (and not the
batch-norm shifts, which are also called ``bias``).

The update is PyTorch's (``torch.optim.SGD`` without dampening or Nesterov),
for a parameter ``p`` with gradient ``g``, learning rate ``lr * lr_mult`` and
decay ``weight_decay * decay_mult``::

    d = g + weight_decay * decay_mult * p
    v = momentum * v + d          (v starts at 0, so the first v is d)
    p = p - lr * lr_mult * v

Caffe keeps the learning rate inside the history instead
(``v = momentum * v + lr * d; p = p - v``). With a fixed learning rate, as in
every SegNet solver, the two give the same iterates; they differ only after
the learning rate changes (Caffe's history still carries the old rate).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["SGD", "SCHEDULES", "caffe_bias_keys", "scheduled_lr"]


def _is_bias(key: str) -> bool:
    return key == "bias" or key.endswith(".bias")


def caffe_bias_keys(model) -> set[str]:
    """Dotted names of the biases that get Caffe's ``lr_mult: 2, decay_mult: 0``.

    These are the ``bias`` parameters of every layer except batch-norm layers
    (recognised by their ``running_mean`` buffer): SegNet-Tutorial's ``BN``
    layers keep Caffe's default multipliers (1, 1) for their scale and shift.

    Parameters
    ----------
    model : Module
        A model or layer (:class:`npsegnet.layers.base.Module`).

    Returns
    -------
    set of str
        Keys of ``model.params``.
    """
    keys: set[str] = set()

    def walk(module, prefix: str) -> None:
        is_norm = "running_mean" in module._buffers
        if not is_norm and "bias" in module._params:
            keys.add(prefix + "bias")
        for name, child in module.named_children():
            walk(child, f"{prefix}{name}.")

    walk(model, "")
    return keys


class SGD:
    """SGD with momentum and weight decay that updates arrays in place.

    Parameters
    ----------
    params : dict of str to ndarray
        The trainable arrays (``model.params``); they are updated in place, so
        the model sees every step.
    grads : dict of str to ndarray
        Their gradients (``model.grads``), same keys and shapes.
    lr : float
        Base learning rate (> 0).
    momentum : float, default 0.9
        Momentum coefficient in [0, 1).
    weight_decay : float, default 5e-4
        L2 penalty coefficient (>= 0), added to the gradient as ``wd * p``.
    bias_lr_mult : float, default 2.0
        Learning-rate multiplier of the arrays in ``bias_keys`` (Caffe's
        ``lr_mult`` of SegNet's convolution biases).
    bias_decay_mult : float, default 0.0
        Weight-decay multiplier of the arrays in ``bias_keys``.
    bias_keys : iterable of str, optional
        Which keys are biases. By default every key named ``bias`` or ending in
        ``.bias``; pass :func:`caffe_bias_keys` ``(model)`` to leave batch-norm
        shifts at multipliers (1, 1) as SegNet-Tutorial does.

    Attributes
    ----------
    lr : float
        May be changed between steps (a schedule); the momentum buffers do not
        carry the old rate (PyTorch's convention).
    step_count : int
        Number of :meth:`step` calls so far.

    Examples
    --------
    >>> p = {"w": np.array([1.0]), "bias": np.array([1.0])}
    >>> g = {"w": np.array([0.5]), "bias": np.array([0.5])}
    >>> opt = SGD(p, g, lr=0.1, momentum=0.9, weight_decay=0.1)
    >>> opt.step()
    >>> p["w"], p["bias"]  # w: 1 - 0.1*(0.5 + 0.1*1); bias: 1 - 0.2*0.5
    (array([0.94]), array([0.9]))
    """

    def __init__(
        self,
        params: dict,
        grads: dict,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        bias_lr_mult: float = 2.0,
        bias_decay_mult: float = 0.0,
        bias_keys: Iterable[str] | None = None,
    ):
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise TypeError("params and grads must be dicts of arrays (model.params)")
        if set(params) != set(grads):
            raise ValueError(
                "params and grads must have the same keys; differing: "
                f"{sorted(set(params) ^ set(grads))}"
            )
        for key, p in params.items():
            g = grads[key]
            if not isinstance(p, np.ndarray) or not isinstance(g, np.ndarray):
                raise TypeError(f"params[{key!r}] and grads[{key!r}] must be arrays")
            if p.shape != g.shape:
                raise ValueError(
                    f"grads[{key!r}] has shape {g.shape}, params[{key!r}] {p.shape}"
                )
            if p.dtype.kind != "f":
                raise TypeError(f"params[{key!r}] must be a float array, got {p.dtype}")
        self.lr = _check_nonneg(lr, "lr", strictly=True)
        self.momentum = _check_nonneg(momentum, "momentum")
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.weight_decay = _check_nonneg(weight_decay, "weight_decay")
        self.bias_lr_mult = _check_nonneg(bias_lr_mult, "bias_lr_mult")
        self.bias_decay_mult = _check_nonneg(bias_decay_mult, "bias_decay_mult")
        if bias_keys is None:
            bias = {k for k in params if _is_bias(k)}
        else:
            bias = set(bias_keys)
            unknown = sorted(bias - set(params))
            if unknown:
                raise ValueError(f"bias_keys not in params: {unknown}")
        self.params = params
        self.grads = grads
        # (lr_mult, decay_mult) per key, fixed at construction.
        self.multipliers = {
            k: (self.bias_lr_mult, self.bias_decay_mult) if k in bias else (1.0, 1.0)
            for k in params
        }
        self.velocity = {k: np.zeros_like(p) for k, p in params.items()}
        self.step_count = 0

    def zero_grad(self) -> None:
        """Set every gradient to zero, in place."""
        for g in self.grads.values():
            g.fill(0)

    def _scratch(self, p: np.ndarray) -> np.ndarray:
        """A temporary of ``p``'s shape and dtype, kept between steps (one per
        dtype, as large as the largest parameter): a step allocates nothing."""
        kept = self.__dict__.setdefault("_scratch_arrays", {})
        buf = kept.get(p.dtype)
        if buf is None or buf.size < p.size:
            buf = kept[p.dtype] = np.empty(p.size, p.dtype)
        return buf[: p.size].reshape(p.shape)

    def step(self) -> None:
        """Apply one update to every parameter, in place."""
        for key, p in self.params.items():
            lr_mult, decay_mult = self.multipliers[key]
            g = self.grads[key]
            v = self.velocity[key]
            wd = self.weight_decay * decay_mult
            tmp = self._scratch(p)
            # Same order of operations as torch.optim.SGD (d = g + wd*p first),
            # written into tmp; a + b is b + a bit for bit. Python floats keep
            # float32 arrays in float32 (NEP 50).
            d = g
            if wd != 0.0:
                d = np.add(g, np.multiply(p, wd, out=tmp), out=tmp)
            if self.momentum != 0.0:
                v *= self.momentum
                v += d
                d = v
            p -= np.multiply(d, self.lr * lr_mult, out=tmp)
        self.step_count += 1

    # -- state --------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that restore the optimiser: step count and momentum buffers.

        Keys are ``"step_count"`` (0-d int64) and ``"velocity.<param key>"``.
        Hyperparameters are not included: they belong to the training config.
        """
        state = {"step_count": np.array(self.step_count, dtype=np.int64)}
        for key, v in self.velocity.items():
            state[f"velocity.{key}"] = v.copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output, in place.

        Raises
        ------
        KeyError
            When a momentum buffer is missing or unexpected.
        ValueError
            When a buffer's shape differs from its parameter's.
        """
        if "step_count" not in state:
            raise KeyError("optimizer state has no 'step_count'")
        given = {k[len("velocity.") :] for k in state if k.startswith("velocity.")}
        missing = sorted(set(self.velocity) - given)
        unexpected = sorted(given - set(self.velocity))
        if missing or unexpected:
            raise KeyError(
                "optimizer state does not match the parameters: missing "
                f"{missing}, unexpected {unexpected}"
            )
        for key, v in self.velocity.items():
            value = np.asarray(state[f"velocity.{key}"])
            if value.shape != v.shape:
                raise ValueError(
                    f"velocity.{key}: shape {value.shape} in the state, {v.shape} "
                    "in the parameters"
                )
            v[...] = value
        self.step_count = int(state["step_count"])

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr}, momentum={self.momentum}, "
            f"weight_decay={self.weight_decay}, bias_lr_mult={self.bias_lr_mult}, "
            f"bias_decay_mult={self.bias_decay_mult})"
        )


def _check_nonneg(value, name: str, strictly: bool = False) -> float:
    numeric = (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (strictly and value == 0):
        bound = "> 0" if strictly else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


#: Learning-rate schedules of :func:`scheduled_lr`.
SCHEDULES = ("fixed", "step", "poly", "cosine")


def scheduled_lr(
    base_lr: float,
    step: int,
    total_steps: int,
    schedule: str = "fixed",
    warmup_steps: int = 0,
    step_every: int | None = None,
    gamma: float = 0.1,
    power: float = 0.9,
    min_lr: float = 0.0,
) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of a run.

    ``"fixed"`` is the paper's constant rate (SegNet-Tutorial's solvers);
    ``"step"`` multiplies it by ``gamma`` every ``step_every`` steps (Caffe's
    ``lr_policy: "step"``); ``"poly"`` decays it as
    ``(1 - t / T) ** power`` (DeepLab's and ChainerCV's); ``"cosine"`` as
    ``(1 + cos(pi t / T)) / 2`` (Loshchilov & Hutter 2017), both down to
    ``min_lr``. A warm-up ramps the rate linearly from ``base_lr /
    warmup_steps`` to ``base_lr`` over the first ``warmup_steps`` steps (large
    rates from random weights can diverge), and the decay runs over the
    remaining ones.

    Parameters
    ----------
    base_lr : float
    step : int
        Completed optimiser steps before this one.
    total_steps : int
        Steps of the whole run.
    schedule : {"fixed", "step", "poly", "cosine"}
    warmup_steps : int
    step_every : int, optional
        For ``"step"``: steps between decays (required).
    gamma, power, min_lr : float
        Factor of ``"step"``, exponent of ``"poly"``, floor of poly/cosine.

    Returns
    -------
    float
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = step - warmup_steps
    T = max(total_steps - warmup_steps, 1)
    if schedule == "fixed":
        return base_lr
    if schedule == "step":
        if not step_every or step_every < 1:
            raise ValueError("the step schedule needs step_every >= 1")
        return base_lr * gamma ** (t // step_every)
    frac = min(t / T, 1.0)
    if schedule == "poly":
        factor = (1.0 - frac) ** power
    else:
        factor = 0.5 * (1.0 + np.cos(np.pi * frac))
    return float(min_lr + (base_lr - min_lr) * factor)
