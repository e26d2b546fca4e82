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

Buffers: who may reuse an array
-------------------------------
A layer on its own allocates every array it returns (``forward``'s output,
``backward``'s input gradient) anew: a student calling ``pool.forward(a)``
then ``pool.forward(b)`` keeps two independent results.

A model turns on **buffer reuse** for its layers (``reuse_buffers = True``,
which the models set in their constructor): it hands every layer below it
one :class:`~npsegnet.layers.buffers.BufferPool`, and the layers take their
outputs, gradients and pooling indices from it (:meth:`Module._reused`). The
pool hands out an array only when **nothing but the pool refers to it**
(Python's reference count), so an array still in use (in a layer's
``cache``, an encoder's record, a caller's variable, or viewed by any of
these) is never overwritten, and no output can alias its layer's input.
After the first step, a step finds all it needs among the arrays the
previous one dropped and allocates (almost) nothing: no page faults, no
process-wide ``mallopt`` needed.

What a model returns to its user (the logits of ``forward``, the input
gradient of ``backward``) is always a fresh array that the pool no longer
keeps. :meth:`release_buffers` lets the pool forget its arrays (memory goes
back to the C library as soon as no one uses them); a model also starts over
when its input changes shape or dtype. Reuse never changes a result: the
kernels write every element of the arrays they are given.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..config import DEFAULT_DTYPE
from .buffers import BufferPool


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
    #: The pool the layer takes its arrays from (None: fresh arrays); see
    #: :attr:`reuse_buffers`.
    _buffer_pool: BufferPool | None = None

    def __init__(self, dtype=DEFAULT_DTYPE):
        self.training = True
        self.dtype = np.dtype(dtype)
        self.cache = None  # what forward keeps for backward
        self._params: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        self._buffers: dict[str, np.ndarray] = {}
        self._buffer_pool = None

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

    # -- reused arrays -------------------------------------------------------
    @property
    def reuse_buffers(self) -> bool:
        """Whether this module takes its arrays from a shared pool.

        Setting it True gives this module and all below it one new
        :class:`~npsegnet.layers.buffers.BufferPool`; False makes them all
        allocate fresh arrays again. Models set it True; a layer made on its
        own has it False. See the module notes for the contract.
        """
        return self._buffer_pool is not None

    @reuse_buffers.setter
    def reuse_buffers(self, value: bool) -> None:
        pool = BufferPool() if value else None
        for module in self.modules():
            module._buffer_pool = pool

    def _reused(self, **specs) -> dict[str, np.ndarray]:
        """Arrays from the pool to pass to a kernel as its ``out=`` arguments.

        ``specs`` maps each argument name to ``(shape, dtype)`` (or None to
        leave it out). Without a pool the dict is empty and the kernel
        allocates fresh arrays, as it does when called directly. Kernels
        overwrite every element of what they are given.
        """
        pool = self._buffer_pool
        if pool is None:
            return {}
        return {
            name: pool.empty(*spec) for name, spec in specs.items() if spec is not None
        }

    def release_buffers(self) -> None:
        """Let the buffer pool forget its arrays (no effect without reuse).

        Always safe: arrays in use (caches, results you hold) stay valid;
        the next pass allocates afresh. Call it when a model will sit idle,
        to give the memory of its last step back.
        """
        if self._buffer_pool is not None:
            self._buffer_pool.release()

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
