"""The encoder-decoder skeleton that SegNet-Basic and SegNet share.

A SegNet is a chain of *encoder stages* (convolutions, each followed by
batch-norm and ReLU, then a 2×2 stride-2 max-pool that records where each
maximum came from) and a mirror chain of *decoder stages* (a max-unpool that
puts every value back at the position its mirrored encoder pool recorded,
then convolutions that densify the sparse map). Badrinarayanan, Kendall &
Cipolla, "SegNet", arXiv 1511.00561, §3 and Fig. 3.

This module holds that wiring once:

* :class:`EncoderStage` and :class:`DecoderStage` run a list of named layers
  (``conv``, ``bn``, ``relu`` or ``conv1``, ``bn1``, ...) and the pool/unpool;
* :class:`EncoderDecoder` chains the stages, carries each pool's indices
  **and its input size** to the mirrored decoder, runs the backward pass in
  reverse, and knows its constructor arguments so that a weights file can
  rebuild it (:mod:`npsegnet.models.io`).

Only the layer plans differ between the two models; they live in
:mod:`npsegnet.models.segnet_basic` and :mod:`npsegnet.models.segnet`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import check_float_array
from ..config import FLOAT_DTYPES
from ..layers.base import Module
from ..layers.batchnorm import BatchNorm2D
from ..layers.conv import Conv2D
from ..layers.pool import MaxPool2D
from ..layers.unpool import MaxUnpool2D


class PoolRecord(NamedTuple):
    """What an encoder stage hands to its mirrored decoder stage.

    Attributes
    ----------
    indices : ndarray of int64, shape (N, C, H // 2, W // 2)
        Flat index ``h * W + w`` of each window's maximum in its ``(n, c)``
        plane of the pool's input.
    size : tuple of int
        ``(H, W)``, the pool's input size, which the unpool restores. With
        floor-mode pooling an odd ``H`` loses its last row in the pool, so
        ``H`` cannot be recovered from the pooled map alone.
    """

    indices: np.ndarray
    size: tuple[int, int]


class Stage(Module):
    """A chain of named layers run in the order they were added."""

    def __init__(self, dtype):
        super().__init__(dtype)
        self.order: list[str] = []

    def add(self, name: str, layer: Module) -> Module:
        """Attach ``layer`` as attribute ``name`` and run it after the others."""
        setattr(self, name, layer)
        self.order.append(name)
        return layer

    def _forward_layers(self, x):
        for name in self.order:
            x = getattr(self, name).forward(x)
        return x

    def _backward_layers(self, dout):
        for name in reversed(self.order):
            dout = getattr(self, name).backward(dout)
        return dout

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.order)
        return f"{type(self).__name__}({inner})"


class EncoderStage(Stage):
    """Layers, then a 2×2 stride-2 max-pool that records its indices."""

    def __init__(self, dtype):
        super().__init__(dtype)
        self.pool = MaxPool2D(kernel_size=2, stride=2, dtype=dtype)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, PoolRecord]:
        """Run the layers and pool.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)

        Returns
        -------
        y : ndarray of shape (N, C_out, H // 2, W // 2)
        record : PoolRecord
            The pool's indices and input size ``(H, W)``.
        """
        x = self._forward_layers(x)
        y, indices = self.pool.forward(x)
        return y, PoolRecord(indices, (int(x.shape[2]), int(x.shape[3])))

    def backward(self, dout: np.ndarray):
        """Gradient of the stage's input given that of its pooled output."""
        return self._backward_layers(self.pool.backward(dout))


class DecoderStage(Stage):
    """A max-unpool to the mirrored encoder's pre-pool size, then layers."""

    def __init__(self, dtype):
        super().__init__(dtype)
        self.unpool = MaxUnpool2D(kernel_size=2, stride=2, dtype=dtype)

    def forward(self, x: np.ndarray, record: PoolRecord) -> np.ndarray:
        """Unpool with the mirrored encoder's record, then run the layers.

        Parameters
        ----------
        x : ndarray of shape (N, C, h, w)
        record : PoolRecord
            From the mirrored :class:`EncoderStage`; ``record.indices`` has
            the shape of ``x``.

        Returns
        -------
        ndarray of shape (N, C_out, H, W)
            ``(H, W) = record.size``.
        """
        x = self.unpool.forward(x, record.indices, output_size=record.size)
        return self._forward_layers(x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Gradient of the stage's (pooled-size) input."""
        return self.unpool.backward(self._backward_layers(dout))


def conv_seeds(seed: int):
    """An endless stream of per-layer seeds drawn from the model's ``seed``."""
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(0, 2**31 - 1))


def add_conv_bn(
    stage: Stage,
    suffix: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    relu: bool,
    dtype,
    seed: int,
) -> None:
    """Append ``conv{suffix}`` → ``bn{suffix}`` (→ ReLU) to ``stage``.

    The ReLU is fused into the batch-norm layer (``BatchNorm2D(relu=True)``):
    one pass over the map instead of two, and no extra activation to store.
    """
    stage.add(
        f"conv{suffix}",
        Conv2D(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            bias=True,
            dtype=dtype,
            seed=seed,
        ),
    )
    stage.add(f"bn{suffix}", BatchNorm2D(out_channels, relu=relu, dtype=dtype))


class EncoderDecoder(Module):
    """Encoder stages ``enc1..encS``, decoder stages ``decS..dec1``, a head.

    Subclasses build the stages as attributes ``enc1``, ..., ``dec1`` (and an
    optional ``classifier``), set :attr:`name`, and keep their constructor
    arguments but ``dtype`` in ``self._config``.
    """

    #: Registry name (``"segnet-basic"``, ``"segnet"``), stored in weight files.
    name = "encoder-decoder"

    def __init__(self, num_stages: int, in_channels: int, dtype):
        if np.dtype(dtype).name not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        super().__init__(dtype)
        self.num_stages = num_stages
        self.in_channels = in_channels
        self._config: dict = {}
        self._logits_shape: tuple | None = None

    @property
    def config(self) -> dict:
        """The constructor arguments that rebuild this model, JSON-serialisable.

        ``dtype`` is the current one, so a model converted with :meth:`astype`
        saves and reloads as what it has become.
        """
        return {**self._config, "dtype": self.dtype.name}

    # -- structure ----------------------------------------------------------
    @property
    def encoders(self) -> list[EncoderStage]:
        """``[enc1, ..., encS]``, in the order data flows through them."""
        return [getattr(self, f"enc{i}") for i in range(1, self.num_stages + 1)]

    @property
    def decoders(self) -> list[DecoderStage]:
        """``[decS, ..., dec1]``, in the order data flows through them."""
        return [getattr(self, f"dec{i}") for i in range(self.num_stages, 0, -1)]

    @property
    def head(self) -> Module | None:
        """The layer after the last decoder stage (``classifier``), if any."""
        return getattr(self, "classifier", None)

    @property
    def min_size(self) -> int:
        """Smallest input height and width: ``2 ** num_stages``."""
        return 2**self.num_stages

    @property
    def input_grad(self) -> bool:
        """Whether :meth:`backward` computes and returns the input gradient.

        Training never needs the gradient of the image, and it costs the
        first convolution a full extra pass, so it is off by default and
        :meth:`backward` returns ``None``. Set it to ``True`` for a gradient
        check of the whole model or for saliency maps.
        """
        return bool(self._first_conv().need_dx)

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        self._first_conv().need_dx = bool(value)

    def _first_conv(self) -> Conv2D:
        return getattr(self.enc1, self.enc1.order[0])

    # -- forward ------------------------------------------------------------
    def _check_input(self, x) -> np.ndarray:
        x = check_float_array(x, "x", ndim=4, dtype=self.dtype)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels but {type(self).__name__} was built "
                f"with in_channels={self.in_channels}"
            )
        h, w = x.shape[2], x.shape[3]
        if h < self.min_size or w < self.min_size:
            raise ValueError(
                f"x is {h}x{w} but {type(self).__name__} pools {self.num_stages} "
                f"times by 2 and needs height and width >= {self.min_size}"
            )
        return x

    def encode(
        self, x: np.ndarray, keep_cache: bool = True
    ) -> tuple[np.ndarray, list[PoolRecord]]:
        """Run the encoder.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
        keep_cache : bool
            See :meth:`forward`.

        Returns
        -------
        features : ndarray of shape (N, C_S, H_S, W_S)
            The last pool's output; ``H_S`` is ``H`` halved (rounding down)
            ``S`` times.
        records : list of PoolRecord
            One per encoder stage, ``enc1`` first.
        """
        x = self._check_input(x)
        records = []
        for stage in self.encoders:
            x, record = stage.forward(x)
            records.append(record)  # holds the indices even when the cache goes
            if not keep_cache:
                stage.clear_cache()
        return x, records

    def decode(
        self, features: np.ndarray, records: list[PoolRecord], keep_cache: bool = True
    ) -> np.ndarray:
        """Run the decoder and head on :meth:`encode`'s output.

        Decoder stage ``k`` unpools with ``records[k - 1]``, the record of its
        mirrored encoder stage ``k``. ``keep_cache``: see :meth:`forward`.

        Returns
        -------
        ndarray of shape (N, num_classes, H, W)
        """
        if len(records) != self.num_stages:
            raise ValueError(
                f"records must hold {self.num_stages} PoolRecords, got {len(records)}"
            )
        x = features
        for stage, record in zip(self.decoders, reversed(records), strict=True):
            x = stage.forward(x, record)
            if not keep_cache:
                stage.clear_cache()
        if self.head is not None:
            x = self.head.forward(x)
            if not keep_cache:
                self.head.clear_cache()
        return x

    def forward(self, x: np.ndarray, keep_cache: bool = True) -> np.ndarray:
        """Class scores (logits) of every pixel.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
            Normalised images in the model's dtype; ``H, W >= min_size``.
        keep_cache : bool
            Keep what :meth:`backward` needs (every layer's input). Inference
            passes False: each stage then drops its saved maps as soon as it
            has run, as PyTorch's ``inference_mode`` keeps none, which cuts
            the memory of a 360x480 batch of 4 from about 2 GB to a few
            maps; ``backward`` then raises.

        Returns
        -------
        ndarray of shape (N, num_classes, H, W)
            Unnormalised scores; feed them to a softmax cross-entropy loss.

        Shape
        -----
        The output has the input's ``H`` and ``W`` for any ``H, W >=
        2 ** num_stages``, odd included: every unpool restores the exact size
        its mirrored pool received.
        """
        features, records = self.encode(x, keep_cache)
        logits = self.decode(features, records, keep_cache)
        self._logits_shape = logits.shape if keep_cache else None
        return logits

    def backward(
        self, dlogits: np.ndarray, retain_cache: bool = False
    ) -> np.ndarray | None:
        """Back-propagate ``dlogits``, accumulating into :attr:`grads`.

        Parameters
        ----------
        dlogits : ndarray of shape (N, num_classes, H, W)
            Gradient of the loss with respect to the last :meth:`forward`'s
            output.
        retain_cache : bool
            Keep what the forward pass saved, so that ``backward`` may run
            again on the same forward (PyTorch's ``retain_graph``). By
            default each stage frees its saved maps as soon as its backward
            pass is done, which lowers the peak memory of a training step:
            the next forward then starts with none of the old maps alive.

        Returns
        -------
        ndarray of shape (N, C_in, H, W) or None
            The input gradient when :attr:`input_grad` is set, else ``None``.
        """
        if self._logits_shape is None:
            raise RuntimeError(
                "backward() called before forward(), or a second time after the "
                "first freed the forward's saved maps (pass retain_cache=True to "
                "back-propagate twice)"
            )
        dlogits = check_float_array(dlogits, "dlogits", ndim=4, dtype=self.dtype)
        if dlogits.shape != self._logits_shape:
            raise ValueError(
                f"dlogits has shape {dlogits.shape} but the last forward() returned "
                f"{self._logits_shape}"
            )
        d = dlogits
        del dlogits  # the loss's buffer can go as soon as the head is done
        modules = [self.head] if self.head is not None else []
        modules += list(reversed(self.decoders)) + list(reversed(self.encoders))
        for module in modules:
            d = module.backward(d)
            if not retain_cache:
                module.clear_cache()
        if not retain_cache:
            self._logits_shape = None
        return d

    # -- weights files ------------------------------------------------------
    def save(self, path, metadata: dict | None = None):
        """Write parameters, buffers and :attr:`config` to ``path`` (``.npz``).

        See :func:`npsegnet.models.io.save_weights`.
        """
        from .io import save_weights

        return save_weights(self, path, metadata=metadata)

    def load(self, path, strict: bool = True):
        """Read weights saved by :meth:`save` into this model, in place.

        See :func:`npsegnet.models.io.load_weights`.
        """
        from .io import load_weights

        return load_weights(self, path, strict=strict)

    @classmethod
    def from_file(cls, path, dtype=None):
        """Build the model a weights file describes and load its weights.

        Raises ``ValueError`` when the file holds another architecture.
        """
        from .io import load_model

        model = load_model(path, dtype=dtype)
        if not isinstance(model, cls):
            raise ValueError(
                f"{path} holds a {model.name!r} model, not a {cls.name!r} model"
            )
        return model

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args}) with {self.num_params():,} parameters"
