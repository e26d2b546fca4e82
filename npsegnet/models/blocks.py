"""The encoder-decoder skeleton that SegNet-Basic, SegNet and their variants share.

A SegNet is a chain of encoder stages and a mirror chain of decoder stages
(Badrinarayanan, Kendall & Cipolla, "SegNet", arXiv 1511.00561, §3 and
Fig. 3). :class:`EncoderDecoder` holds that wiring once: it runs the
:mod:`stages <npsegnet.models.stages>` ``enc1..encS``, hands each stage's
:mod:`record <npsegnet.models.records>` (pool indices or feature maps, with
the pre-pool size) to its mirrored decoder stage ``decS..dec1``, runs an
optional head, the backward pass in reverse, and saves itself to a weights
file (:mod:`npsegnet.models.weights`).

Only the stage plans differ between models; they live in
:mod:`npsegnet.models.segnet_basic` and :mod:`npsegnet.models.segnet`, and a
new variant can be a one-line ``EncoderDecoder(encoders=..., decoders=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._checks import check_float_array, check_positive_int
from ..config import DEFAULT_DTYPE, FLOAT_DTYPES
from ..layers.base import Module, warn_renamed
from ..layers.dropout import Dropout
from .records import PoolRecord, Record, tile_record
from .stages import (
    DecoderStage,
    EncoderStage,
    Stage,
    add_conv_bn,
    conv_bn,
    conv_seeds,
)
from .weights import load_model, load_weights, save_weights

# Stage, add_conv_bn, conv_seeds and PoolRecord were defined here before the
# stages and records got modules of their own; kept importable from here.
__all__ = [
    "DecoderStage",
    "EncoderDecoder",
    "EncoderStage",
    "PoolRecord",
    "PrefixState",
    "Stage",
    "add_conv_bn",
    "check_model_dtype",
    "conv_bn",
    "conv_seeds",
]


def check_model_dtype(dtype) -> np.dtype:
    """``np.dtype(dtype)`` if it is float32 or float64, else ``TypeError``."""
    if np.dtype(dtype).name not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    return np.dtype(dtype)


def _compact(stage: EncoderStage, keep_cache: bool, compact: bool | None):
    """What a stage's pool records: inference defaults to 2-bit indices."""
    if compact is None and not keep_cache:
        return True if stage.down_sampler.supports_compact else None
    return compact


@dataclass
class PrefixState:
    """What :meth:`EncoderDecoder.forward_prefix` hands to ``forward_suffix``.

    Attributes
    ----------
    x : ndarray
        The map where the prefix stopped, for a batch of ``N`` images.
    records : list of Record
        The records of the encoder stages the prefix ran, ``enc1`` first.
    step : tuple or None
        The first step left to run, ``("enc", k, "main" | "after")``,
        ``("dec", k, "main")`` or ``("head", 0, "main")``; ``None`` when the
        prefix ran the whole network (``x`` is then the logits).
    compact : bool or None
        The ``compact`` the prefix's pools used, for the suffix's.
    """

    x: np.ndarray
    records: list
    step: tuple | None
    compact: bool | None = None


class EncoderDecoder(Module):
    """Encoder stages ``enc1..encS``, decoder stages ``decS..dec1``, a head.

    Parameters
    ----------
    num_stages : int, optional
        ``S``; taken from ``encoders`` when they are given.
    in_channels : int
        Channels of the input images.
    dtype : dtype
        float32 or float64.
    encoders : sequence of EncoderStage, optional
        ``[enc1, ..., encS]``, in the order data flows through them.
    decoders : sequence of DecoderStage, optional
        ``[decS, ..., dec1]``, in the order data flows: decoder stage ``k``
        receives encoder stage ``k``'s record.
    head : Module, optional
        Run after the last decoder stage (attribute ``classifier``).

    Notes
    -----
    SegNetBasic and SegNet build their stages and hand them to this
    constructor, set :attr:`name` and keep their constructor arguments but
    ``dtype`` in ``self._config`` (what a weights file records to rebuild
    them). Any other stack of stages is a model too, with the same forward,
    backward and weights; :func:`~npsegnet.models.load_model` only rebuilds
    the registered ones (load the others with :meth:`load`).

    Like every layer, the model keeps its own backward state in ``cache``:
    the shape of the last forward's logits, which :meth:`backward` checks
    ``dlogits`` against; :meth:`clear_cache` frees it with the layers'.

    Examples
    --------
    A SegNet-Basic-shaped network whose decoders up-sample bilinearly (the
    paper's "Bilinear-Interpolation" variant, Table 1):

    >>> from npsegnet.layers import Conv2D, Upsample
    >>> from npsegnet.models import DecoderStage, EncoderDecoder, EncoderStage
    >>> from npsegnet.models.stages import conv_bn
    >>> model = EncoderDecoder(
    ...     in_channels=3,
    ...     encoders=[EncoderStage(layers=conv_bn("", c, 8, 3, relu=True,
    ...               dtype="float32", seed=k)) for k, c in enumerate((3, 8))],
    ...     decoders=[DecoderStage(up=Upsample(2), up_name="up", layers=conv_bn(
    ...               "", 8, 8, 3, relu=False, dtype="float32", seed=k))
    ...               for k in (2, 3)],
    ...     head=Conv2D(8, 5, 1, seed=4),
    ... )
    >>> import numpy as np
    >>> model.forward(np.zeros((1, 3, 9, 10), np.float32)).shape
    (1, 5, 9, 10)
    """

    #: Registry name (``"segnet-basic"``, ``"segnet"``), stored in weight files.
    name = "encoder-decoder"

    def __init__(
        self,
        num_stages: int | None = None,
        in_channels: int = 3,
        dtype=DEFAULT_DTYPE,
        *,
        encoders=(),
        decoders=(),
        head: Module | None = None,
    ):
        super().__init__(check_model_dtype(dtype))
        encoders, decoders = list(encoders), list(decoders)
        if num_stages is None:
            num_stages = len(encoders)
        if encoders or decoders:
            if not len(encoders) == len(decoders) == num_stages:
                raise ValueError(
                    f"a model of {num_stages} stages needs {num_stages} encoders "
                    f"and decoders, got {len(encoders)} and {len(decoders)}"
                )
            kinds = [(e, EncoderStage) for e in encoders]
            kinds += [(d, DecoderStage) for d in decoders]
            for stage, kind in kinds:
                if not isinstance(stage, kind):
                    raise TypeError(
                        f"expected a {kind.__name__}, got {type(stage).__name__}"
                    )
        self.num_stages = num_stages
        self.in_channels = in_channels
        self._config: dict = {}
        # Attributes are set in the order data flows, which is also the order
        # of the keys in params, grads and state_dict.
        for k, stage in enumerate(encoders, start=1):
            setattr(self, f"enc{k}", stage)
        for k, stage in zip(range(num_stages, 0, -1), decoders, strict=False):
            setattr(self, f"dec{k}", stage)
        if head is not None:
            self.classifier = head
        # the layers reuse their arrays from step to step (layers/base.py)
        self.reuse_buffers = True

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
    def needs_input_grad(self) -> bool:
        """Whether :meth:`backward` computes and returns the input gradient.

        Training never needs the gradient of the image, and it costs the
        first convolution a full extra pass, so SegNetBasic and SegNet turn it
        off and :meth:`backward` returns ``None``. Set it to ``True`` for a
        gradient check of the whole model or for saliency maps. It is the
        ``needs_input_grad`` of the first layer of ``enc1``.
        """
        return bool(self._first_layer().needs_input_grad)

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        self._first_layer().needs_input_grad = bool(value)

    @property
    def input_grad(self) -> bool:
        """Deprecated alias of :attr:`needs_input_grad` (one release)."""
        warn_renamed("input_grad", "needs_input_grad")
        return self.needs_input_grad

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        warn_renamed("input_grad", "needs_input_grad")
        self.needs_input_grad = value

    def _first_layer(self) -> Module:
        return self.enc1.parts()[0][1]

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

    def _begin_pass(self, x: np.ndarray, training_pass: bool) -> None:
        """Tell the buffer pool a pass on ``x`` starts.

        A training pass (saved maps kept) on a new shape gets new buffers; an
        inference pass borrows free ones but keeps none. Layers attached after
        construction (Bayesian SegNet's dropout) join the model's pool here.
        """
        pool = self._buffer_pool
        if pool is not None:
            pool.begin((x.shape, x.dtype), grow=training_pass)
            for module in self.modules():
                module._buffer_pool = pool

    def _hand_over(self, array):
        """``array``, no longer kept by the buffer pool: the caller's own."""
        if array is not None and self._buffer_pool is not None:
            self._buffer_pool.hand_over(array)
        return array

    def encode(
        self, x: np.ndarray, keep_cache: bool = True, compact: bool | None = None
    ) -> tuple[np.ndarray, list[Record]]:
        """Run the encoder.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
        keep_cache, compact : bool
            See :meth:`forward`.

        Returns
        -------
        features : ndarray of shape (N, C_S, H_S, W_S)
            The last encoder stage's output; with 2×2 pools ``H_S`` is ``H``
            halved (rounding down) ``S`` times.
        records : list of Record
            One per encoder stage, ``enc1`` first (:mod:`npsegnet.models.records`).
        """
        x = self._check_input(x)
        self._begin_pass(x, keep_cache)
        records = []
        for stage in self.encoders:
            x, record = stage.forward(x, compact=_compact(stage, keep_cache, compact))
            records.append(record)  # holds the indices even when the cache goes
            if not keep_cache:
                stage.clear_cache()
        return x, records

    def decode(
        self, features: np.ndarray, records: list[Record], keep_cache: bool = True
    ) -> np.ndarray:
        """Run the decoder and head on :meth:`encode`'s output.

        Decoder stage ``k`` up-samples with ``records[k - 1]``, the record of its
        mirrored encoder stage ``k``. ``keep_cache``: see :meth:`forward`.

        Returns
        -------
        ndarray of shape (N, num_classes, H, W)
        """
        if len(records) != self.num_stages:
            raise ValueError(
                f"records must hold {self.num_stages} records, got {len(records)}"
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
        return self._hand_over(x)

    def forward(
        self, x: np.ndarray, keep_cache: bool = True, compact: bool | None = None
    ) -> np.ndarray:
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
        compact : bool, optional
            Record the pools' indices as 2-bit ``CompactIndices`` stores
            (True) or int64 (False). By default (None) inference
            (``keep_cache=False``) uses the stores wherever a pool is 2x2
            stride 2, which cuts what the decoder keeps 32 times against
            int64; otherwise each pool follows its own ``compact`` setting.
            The logits are the same bit for bit either way.

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
        features, records = self.encode(x, keep_cache, compact)
        logits = self.decode(features, records, keep_cache)
        self.cache = logits.shape if keep_cache else None
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
            The input gradient when :attr:`needs_input_grad` is set, else
            ``None``.
        """
        if self.cache is None:
            raise RuntimeError(
                "backward() called before forward(), or a second time after the "
                "first freed the forward's saved maps (pass retain_cache=True to "
                "back-propagate twice)"
            )
        dlogits = check_float_array(dlogits, "dlogits", ndim=4, dtype=self.dtype)
        if dlogits.shape != self.cache:
            raise ValueError(
                f"dlogits has shape {dlogits.shape} but the last forward() returned "
                f"{self.cache}"
            )
        d = dlogits
        del dlogits  # the loss's buffer can go as soon as the head is done
        if self.head is not None:
            d = self.head.backward(d)
            if not retain_cache:
                self.head.clear_cache()
        # a decoder stage that added its encoder's maps hands their gradient
        # back to that encoder stage (FCN's skips, EncoderAddition)
        drecords = {}
        for k in range(1, self.num_stages + 1):  # dec1 first: backward order
            stage = getattr(self, f"dec{k}")
            d, drecords[k] = stage.backward(
                d, return_record_grad=True, free_caches=not retain_cache
            )
            if not retain_cache:
                stage.clear_cache()
        for k in range(self.num_stages, 0, -1):
            stage = getattr(self, f"enc{k}")
            d = stage.backward(d, drecords.pop(k), free_caches=not retain_cache)
            if not retain_cache:
                stage.clear_cache()
        if not retain_cache:
            self.cache = None
        return self._hand_over(d)

    # -- what the decoder keeps ---------------------------------------------
    def decoder_storage(self, input_size, compact: bool | None = None) -> dict:
        """Bytes the decoder receives from the encoder for one image, measured.

        Runs an inference forward of the encoder (``keep_cache=False``) on a
        zero image of ``input_size`` and sums the ``nbytes`` of the records
        each decoder stage receives: indices (2 bits a window by default, as
        inference keeps them), maps, or nothing but a size. The paper's
        Table 1 storage multiplier is this total against SegNet-Basic's.

        Parameters
        ----------
        input_size : (int, int)
            ``(H, W)`` of the image.
        compact : bool, optional
            As :meth:`forward`: ``None`` keeps 2-bit indices wherever a pool
            is 2×2 stride 2, ``False`` int64 indices.

        Returns
        -------
        dict
            ``{"dec1": bytes, ..., "decS": bytes, "total": bytes}``; ``dec{k}``
            receives encoder stage ``k``'s record.
        """
        if not isinstance(input_size, (tuple, list)) or len(input_size) != 2:
            raise ValueError(f"input_size must be (H, W), got {input_size!r}")
        h, w = (check_positive_int(n, "input_size") for n in input_size)
        x = np.zeros((1, self.in_channels, h, w), self.dtype)
        training = self.training
        self.eval()
        try:
            _, records = self.encode(x, keep_cache=False, compact=compact)
        finally:
            self.train(training)
        storage = {f"dec{k}": r.nbytes for k, r in enumerate(records, start=1)}
        storage["total"] = sum(storage.values())
        return storage

    # -- a deterministic prefix shared by Monte-Carlo samples -------------------
    def _steps(self) -> list[tuple]:
        """The network's steps in data-flow order (see :class:`PrefixState`)."""
        steps = []
        for k in range(1, self.num_stages + 1):
            steps += [("enc", k, "main"), ("enc", k, "after")]
        steps += [("dec", k, "main") for k in range(self.num_stages, 0, -1)]
        return steps + [("head", 0, "main")]

    def _step_layers(self, step) -> list:
        kind, k, part = step
        if kind == "head":
            return [self.head] if self.head is not None else []
        stage = getattr(self, f"{kind}{k}")
        if kind == "dec":
            return [stage]
        if part == "after":
            return [getattr(stage, n) for n in stage.after]
        names = stage.order + stage.skip + [stage.down_name]
        return [getattr(stage, n) for n in names]

    def _is_stochastic(self, step) -> bool:
        return any(
            isinstance(m, Dropout)
            for top in self._step_layers(step)
            for m in top.modules()
        )

    def _run_step(self, step, x, records, compact):
        """One inference step (no saved maps); appends an encoder's record."""
        kind, k, part = step
        if kind == "head":
            if self.head is None:
                return x
            module, x = self.head, self.head.forward(x)
        elif kind == "dec":
            module = getattr(self, f"dec{k}")
            x = module.forward(x, records[k - 1])
        else:
            module = getattr(self, f"enc{k}")
            if part == "after":
                x = module.forward_after(x)
            else:
                x, record = module.forward_to_pool(
                    x, compact=_compact(module, False, compact)
                )
                records.append(record)
        module.clear_cache()
        return x

    def forward_prefix(self, x: np.ndarray, compact: bool | None = None) -> PrefixState:
        """Run the deterministic steps before the first dropout, once.

        Monte-Carlo dropout (:func:`npsegnet.uncertainty.mc_dropout`) runs
        the network many times on the same images; everything before the
        first :class:`~npsegnet.layers.Dropout` computes the same each time,
        so it runs here once and :meth:`forward_suffix` starts from its
        result for every sample. Inference only (no saved maps, no
        backward).

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
        compact : bool, optional
            As :meth:`forward` with ``keep_cache=False``.

        Returns
        -------
        PrefixState
        """
        x = self._check_input(x)
        self._begin_pass(x, False)
        steps, records = self._steps(), []
        for step in steps:
            if self._is_stochastic(step):
                return PrefixState(x, records, step, compact)
            x = self._run_step(step, x, records, compact)
        return PrefixState(x, records, None, compact)

    def forward_suffix(self, state: PrefixState, repeat: int = 1) -> np.ndarray:
        """The rest of the network on ``repeat`` copies of the prefix's batch.

        The prefix's map and records are tiled ``repeat`` times along the
        batch (copy ``j`` of image ``n`` at ``j * N + n``, as
        ``np.concatenate([x] * repeat)``), so the result is what
        ``forward(np.concatenate([x] * repeat), keep_cache=False)`` returns,
        each copy drawing its own dropout masks.

        Returns
        -------
        ndarray of shape (repeat * N, num_classes, H, W)
        """
        repeat = check_positive_int(repeat, "repeat")
        x = state.x if repeat == 1 else np.concatenate([state.x] * repeat, axis=0)
        records = [tile_record(r, repeat) for r in state.records]
        steps = self._steps()
        start = len(steps) if state.step is None else steps.index(state.step)
        for step in steps[start:]:
            x = self._run_step(step, x, records, state.compact)
        self.cache = None
        return self._hand_over(x)

    # -- weights files ------------------------------------------------------
    def save(self, path, metadata: dict | None = None):
        """Write parameters, buffers and :attr:`config` to ``path`` (``.npz``).

        See :func:`npsegnet.models.weights.save_weights`.
        """
        return save_weights(self, path, metadata=metadata)

    def load(self, path, strict: bool = True):
        """Read weights saved by :meth:`save` into this model, in place.

        See :func:`npsegnet.models.weights.load_weights`.
        """
        return load_weights(self, path, strict=strict)

    @classmethod
    def from_file(cls, path, dtype=None):
        """Build the model a weights file describes and load its weights.

        Raises ``ValueError`` when the file holds another architecture.
        """
        model = load_model(path, dtype=dtype)
        if not isinstance(model, cls):
            raise ValueError(
                f"{path} holds a {model.name!r} model, not a {cls.name!r} model"
            )
        return model

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args}) with {self.num_params():,} parameters"
