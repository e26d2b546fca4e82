"""The state every layer and model shares: parameters, gradients, buffers, mode.

A :class:`Module` is a thin shell around the arrays. Its contract:

* ``params`` and ``grads`` are dicts with the same keys (``"weight"``,
  ``"bias"`` as in PyTorch). A model's dicts are keyed by dotted names
  (``"enc1.conv.weight"``) and hold the very arrays of its layers, so an
  optimiser that updates ``model.params[k]`` in place updates the layer.
* ``buffers`` hold what is kept but not learned (batch-norm running
  statistics), apart from ``params``.
* ``backward`` **accumulates** into ``grads`` (``+=``); call :meth:`zero_grad`
  before the next step.
* :meth:`train` / :meth:`eval` switch the mode of the module and all children.
* ``forward`` keeps what ``backward`` needs in **one** attribute, ``cache``
  (a small named tuple or dataclass of the layer's own, ``None`` before the
  first forward), and :meth:`clear_cache` frees it in every layer below.
  ``backward`` without a cache raises ``RuntimeError``.
* ``needs_input_grad`` (default True) says whether ``backward`` must compute
  the gradient of the input. Layers that can skip it (``Conv2D``) then return
  ``None``; a model turns it off on its first layer, whose input is the image.

Children are found as attributes that are modules, in the order they were set,
and their names become the prefixes of the dotted keys.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..config import DEFAULT_DTYPE


def warn_renamed(old: str, new: str) -> None:
    """Warn that ``old`` is a deprecated alias of ``new`` (kept one release)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new}",
        DeprecationWarning,
        stacklevel=3,
    )


class Module:
    """Base class of layers and models."""

    #: Whether ``backward`` must compute the input gradient; layers that can
    #: skip it (Conv2D) return ``None`` when it is False.
    needs_input_grad: bool = True

    def __init__(self, dtype=DEFAULT_DTYPE):
        self.training = True
        self.dtype = np.dtype(dtype)
        self.cache = None  # what forward keeps for backward
        self._params: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        self._buffers: dict[str, np.ndarray] = {}

    # -- parameters ---------------------------------------------------------
    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register a trainable array and a zero gradient of the same shape."""
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self._params[name] = value
        self._grads[name] = np.zeros_like(value)
        return value

    def add_buffer(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register a non-trainable array (kept in ``state_dict``)."""
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self._buffers[name] = value
        return value

    def named_children(self) -> list[tuple[str, Module]]:
        """Child modules as ``(attribute name, module)`` in insertion order."""
        children = []
        for name, value in vars(self).items():
            if isinstance(value, Module):
                children.append((name, value))
            elif (
                isinstance(value, (list, tuple))
                and value
                and all(isinstance(v, Module) for v in value)
            ):
                children.extend((f"{name}.{i}", v) for i, v in enumerate(value))
        return children

    def modules(self):
        """Yield this module and every descendant, depth first."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def clear_cache(self) -> None:
        """Drop what :meth:`forward` saved for :meth:`backward`, here and below.

        Every layer keeps it in one attribute, ``cache``. The saved inputs,
        outputs and pooling indices of a SegNet at 360x480 are over a
        gigabyte; a model frees each stage's as soon as its backward pass has
        used them (see ``EncoderDecoder.backward``).
        """
        for module in self.modules():
            module.cache = None

    def _collect(self, attr: str) -> dict[str, np.ndarray]:
        own = getattr(self, attr)
        children = self.named_children()
        if not children:
            return own  # a leaf returns its own dict, so edits to it stick
        out = dict(own)
        for prefix, child in children:
            for key, value in child._collect(attr).items():
                out[f"{prefix}.{key}"] = value
        return out

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Trainable arrays by (dotted) name."""
        return self._collect("_params")

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradients, same keys and shapes as :attr:`params`."""
        return self._collect("_grads")

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """Non-trainable state (running statistics) by (dotted) name."""
        return self._collect("_buffers")

    def num_params(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.size for p in self.params.values()))

    def zero_grad(self) -> None:
        """Set every gradient to zero, in place."""
        for g in self.grads.values():
            g.fill(0)

    # -- mode ---------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Switch this module and its children to training mode; return self."""
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        """Switch to evaluation mode (running statistics, no dropout)."""
        return self.train(False)

    # -- dtype --------------------------------------------------------------
    def astype(self, dtype) -> Module:
        """Convert parameters, gradients and buffers to ``dtype``, in place.

        Gradient checks use ``layer.astype(np.float64)``.
        """
        dtype = np.dtype(dtype)
        self.dtype = dtype
        for store in (self._params, self._grads, self._buffers):
            for key in store:
                store[key] = store[key].astype(dtype)
        for _, child in self.named_children():
            child.astype(dtype)
        return self

    # -- state --------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of parameters and buffers by dotted name."""
        state = {k: v.copy() for k, v in self.params.items()}
        state.update({k: v.copy() for k, v in self.buffers.items()})
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays from ``state`` into the parameters and buffers, in place.

        Raises
        ------
        KeyError
            With ``strict``, when a key is missing or unexpected.
        ValueError
            When an array's shape differs from the module's.
        """
        own = {**self.params, **self.buffers}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(
                f"state does not match the module: missing {missing}, "
                f"unexpected {unexpected}"
            )
        for key, target in own.items():
            if key not in state:
                continue
            value = np.asarray(state[key])
            if value.shape != target.shape:
                raise ValueError(
                    f"{key}: shape {value.shape} in the state, "
                    f"{target.shape} in the module"
                )
            target[...] = value

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
