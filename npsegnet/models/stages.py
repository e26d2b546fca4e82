"""Encoder and decoder stages, each given its parts: layers and a re-sampler.

A SegNet is a chain of *encoder stages* and a mirror chain of *decoder
stages* (Badrinarayanan, Kendall & Cipolla, "SegNet", arXiv 1511.00561, §3
and Fig. 3). Every stage is built from parts handed to it as values:

* :class:`EncoderStage`: its ``layers`` (convolutions, batch-norm, ...), then
  a **down-sampler** (``MaxPool2D(2, 2)``, which records its indices), then
  optional ``after`` layers (Bayesian SegNet's dropout goes after the pool).
  It returns the down-sampled map and a :mod:`record <npsegnet.models.records>`
  for its mirror: the pool's indices (``keep="indices"``) or the maps before
  the pool (``keep="maps"``), with the pre-pool size either way.
  ``keep="size"`` keeps only the size (bilinear and learned up-samplers need
  no more), ``keep="indices+maps"`` both indices and maps; ``skip`` layers
  run on the kept maps before the record stores them (FCN's 1×1 reduction
  to ``K`` channels).
* :class:`DecoderStage`: optional ``before`` layers (dropout before the
  unpool), then an **up-sampler** that reads the mirrored encoder's record
  (``MaxUnpool2D`` with the indices; ``Upsample`` or ``ConvTranspose2D`` with
  the size only), then its ``layers``, then with ``merge="add"`` the
  record's maps are added (FCN's skip connections, SegNet-Basic-
  EncoderAddition).

So the paper's decoder variants differ only in the part handed over::

    DecoderStage(up=MaxUnpool2D(2, 2), layers=conv_bn("", 64, 64, 7, ...))
    DecoderStage(up=Upsample(2, "bilinear"), up_name="up", layers=...)

How a decoder stage calls each kind of up-sampler, and which record kind it
needs, is written once, in :data:`UP_SAMPLERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._checks import check_choice
from ..config import DEFAULT_DTYPE
from ..layers.base import Module
from ..layers.batchnorm import BatchNorm2D
from ..layers.conv import Conv2D
from ..layers.conv_transpose import ConvTranspose2D
from ..layers.pool import MaxPool2D
from ..layers.unpool import MaxUnpool2D
from ..layers.upsample import Upsample
from .records import MAP_KINDS, RECORD_KINDS, PoolIndices, Record, make_record

#: Down-samplers an encoder stage accepts: ``forward(x)`` returns
#: ``(y, indices)``, as ``torch.nn.MaxPool2d(return_indices=True)``.
DOWN_SAMPLERS = (MaxPool2D,)


@dataclass(frozen=True)
class UpSampling:
    """How a decoder stage calls one kind of up-sampler.

    Attributes
    ----------
    needs : type
        The record class the up-sampler reads (:class:`Record`: any).
    arguments : callable
        ``record -> (args, kwargs)`` passed after ``x`` to its ``forward``.
    """

    needs: type
    arguments: Callable[[Record], tuple[tuple, dict]]

    def __call__(self, layer, x, record):
        """``layer(x, *args, **kwargs)`` with the arguments ``record`` gives."""
        if not isinstance(record, self.needs):
            raise TypeError(
                f"{type(layer).__name__} up-samples with a {self.needs.__name__} "
                f"record from its mirrored encoder stage, got "
                f"{type(record).__name__}"
                + (
                    f" (kind {record.kind!r}); build that encoder stage with "
                    f"keep={self.needs.kind!r}"
                    if isinstance(record, Record) and self.needs is not Record
                    else ""
                )
            )
        args, kwargs = self.arguments(record)
        return layer(x, *args, **kwargs)


def _indices_and_size(record: PoolIndices):
    return (record.indices,), {"output_size": record.size}


def _size(record: Record):
    return (), {"output_size": record.size}


#: The up-samplers a decoder stage accepts, and how it calls each one.
UP_SAMPLERS: dict[type, UpSampling] = {
    MaxUnpool2D: UpSampling(PoolIndices, _indices_and_size),
    Upsample: UpSampling(Record, _size),
    ConvTranspose2D: UpSampling(Record, _size),
}


def _add_maps(x, record, out=None):
    """``x + record.maps`` (into ``out`` if given), checking the record holds
    maps of ``x``'s shape."""
    maps = getattr(record, "maps", None)
    if maps is None or getattr(record, "kind", None) not in MAP_KINDS:
        raise TypeError(
            "merge='add' adds the mirrored encoder stage's maps: it needs a "
            "FeatureMaps or IndicesAndMaps record (build that encoder stage with "
            f"keep='maps' or 'indices+maps'), got {type(record).__name__}"
        )
    if tuple(maps.shape) != tuple(x.shape):
        raise ValueError(
            f"merge='add': the encoder kept maps of shape {tuple(maps.shape)} but "
            f"the decoder stage made {tuple(x.shape)}; give its skip layers or "
            "its up-sampler the decoder's channels"
        )
    # x + maps also serves the PyTorch twin (torch_bridge), whose maps are tensors
    return x + maps if out is None else np.add(x, maps, out=out)


#: How a decoder stage merges the mirrored encoder's maps into its output:
#: ``merge -> function(x, record, out=None) -> x``. Backward: the sum's gradient goes to
#: both terms unchanged.
MERGES = {"add": _add_maps}


def merged(merge, x, record, out=None):
    """``x`` merged with ``record`` as ``merge`` says (``None``: ``x``).

    ``out``: where to write the merged map (a new array by default).
    """
    return x if merge is None else MERGES[merge](x, record, out=out)


def up_sampling(layer) -> UpSampling:
    """The :data:`UP_SAMPLERS` entry of ``layer``'s class (or of a base class)."""
    for cls in type(layer).__mro__:
        if cls in UP_SAMPLERS:
            return UP_SAMPLERS[cls]
    raise TypeError(
        f"{type(layer).__name__} is not an up-sampler a DecoderStage knows; use "
        f"one of {[c.__name__ for c in UP_SAMPLERS]} (or add it to UP_SAMPLERS)"
    )


def _named(layers) -> list[tuple[str, Module]]:
    """``[(name, layer), ...]`` from a dict or a sequence of pairs."""
    pairs = list(layers.items()) if isinstance(layers, dict) else list(layers)
    for pair in pairs:
        if not (
            isinstance(pair, tuple)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], Module)
        ):
            raise TypeError(
                f"stage layers must be (name, layer) pairs or a dict, got {pair!r}"
            )
    return pairs


class Stage(Module):
    """Named parts run in data-flow order; subclasses place the re-sampler."""

    def __init__(self, dtype=DEFAULT_DTYPE):
        super().__init__(dtype)
        self.order: list[str] = []  # the stage's main layers

    def add(self, name: str, layer: Module) -> Module:
        """Attach ``layer`` as attribute ``name``; run it after the other layers."""
        return self._attach(self.order, name, layer)

    def _attach(self, names: list, name: str, layer: Module) -> Module:
        if not isinstance(layer, Module):
            raise TypeError(f"{name} must be a layer, got {type(layer).__name__}")
        if name in vars(self) or hasattr(type(self), name):
            raise ValueError(
                f"{type(self).__name__} already has an attribute {name!r}; "
                "give the part another name"
            )
        setattr(self, name, layer)
        names.append(name)
        return layer

    def _run(self, names, x):
        for name in names:
            x = getattr(self, name).forward(x)
        return x

    def _run_back(self, names, dout, free_caches=False):
        for name in reversed(names):
            dout = self._back(getattr(self, name), dout, free_caches)
        return dout

    @staticmethod
    def _back(layer, dout, free_caches):
        """``layer.backward(dout)``; then drop its cache if ``free_caches``
        (its saved maps can then serve the next layer's gradient)."""
        dx = layer.backward(dout)
        if free_caches:
            layer.clear_cache()
        return dx

    def parts(self) -> list[tuple[str, Module, str]]:
        """``(name, layer, role)`` in data-flow order; role is ``"layer"``,
        ``"down"`` or ``"up"``. The PyTorch bridge rebuilds a stage from it."""
        raise NotImplementedError  # pragma: no cover - abstract

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={layer!r}" for name, layer, _ in self.parts())
        return f"{type(self).__name__}({inner})"


class EncoderStage(Stage):
    """``layers`` → down-sampler → ``after``; returns the map and a record.

    Parameters
    ----------
    dtype : dtype
        Of the default down-sampler (the layers bring their own).
    layers : dict or sequence of (name, layer)
        Run first, in order; each becomes an attribute (``stage.conv``) and
        the prefix of its parameters (``"enc1.conv.weight"``).
    down : MaxPool2D, optional
        The down-sampler, ``MaxPool2D(2, 2)`` by default; attribute
        ``down_name``.
    after : dict or sequence of (name, layer)
        Run on the down-sampled map (dropout in Bayesian SegNet).
    keep : {"indices", "maps", "indices+maps", "size"}
        What the record for the mirrored decoder holds: the pool's indices
        (:class:`PoolIndices`), the maps before the pool
        (:class:`FeatureMaps`, for decoders that add the encoder's maps),
        both (:class:`IndicesAndMaps`), or only the pre-pool size
        (:class:`PoolSize`, for up-samplers that need nothing else).
    down_name : str
        Attribute name of the down-sampler (``"pool"``).
    skip : dict or sequence of (name, layer)
        Run on the maps before the pool to make the kept maps (FCN's 1×1
        reduction to ``K`` channels); only with a ``keep`` that holds maps.
        Their gradient comes back from the decoder through :meth:`backward`'s
        ``drecord``.
    """

    def __init__(
        self,
        dtype=DEFAULT_DTYPE,
        *,
        layers=(),
        down=None,
        after=(),
        keep="indices",
        down_name="pool",
        skip=(),
    ):
        super().__init__(dtype)
        self.after: list[str] = []
        self.skip: list[str] = []
        self.keep = check_choice(keep, "keep", tuple(RECORD_KINDS))
        for name, layer in _named(layers):
            self.add(name, layer)
        skip = _named(skip)
        if skip and self.keep not in MAP_KINDS:
            raise ValueError(
                f"skip layers run on the kept maps, but keep={self.keep!r} keeps "
                f"none; use keep='maps' or 'indices+maps'"
            )
        for name, layer in skip:
            self._attach(self.skip, name, layer)
        if down is None:
            down = MaxPool2D(kernel_size=2, stride=2, dtype=dtype)
        if not isinstance(down, DOWN_SAMPLERS):
            raise TypeError(
                f"down must be one of {[c.__name__ for c in DOWN_SAMPLERS]} "
                f"(forward(x) -> (y, indices)), got {type(down).__name__}"
            )
        self.down_name = down_name
        self._attach([], down_name, down)
        for name, layer in _named(after):
            self.add_after(name, layer)

    @property
    def down_sampler(self) -> Module:
        """The down-sampler (``stage.pool`` in SegNet)."""
        return getattr(self, self.down_name)

    def add_after(self, name: str, layer: Module) -> Module:
        """Attach ``layer``; run it on the down-sampled map, after the others."""
        return self._attach(self.after, name, layer)

    def parts(self):
        return (
            [(n, getattr(self, n), "layer") for n in self.order]
            + [(n, getattr(self, n), "skip") for n in self.skip]
            + [(self.down_name, self.down_sampler, "down")]
            + [(n, getattr(self, n), "layer") for n in self.after]
        )

    def forward(self, x: np.ndarray, compact=None) -> tuple[np.ndarray, Record]:
        """Run the layers, the down-sampler and the ``after`` layers.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
        compact : bool, optional
            Passed to the pool's ``forward``: record 2-bit ``CompactIndices``
            (True) or int64 indices (False); ``None`` follows the pool's own
            ``compact`` setting.

        Returns
        -------
        y : ndarray of shape (N, C_out, H // 2, W // 2)
            With the default 2×2 stride-2 pool.
        record : Record
            For the mirrored decoder stage, of the kind ``keep`` names, with
            the pre-pool size ``(H, W)``.
        """
        y, record = self.forward_to_pool(x, compact)
        return self.forward_after(y), record

    def forward_to_pool(self, x: np.ndarray, compact=None):
        """:meth:`forward` without the ``after`` layers: ``(pooled, record)``."""
        x = self._run(self.order, x)
        size = (x.shape[2], x.shape[3])
        if compact is None:  # a down-sampler's contract is forward(x)
            y, indices = self.down_sampler.forward(x)
        else:
            y, indices = self.down_sampler.forward(x, compact=compact)
        maps = self._run(self.skip, x) if self.keep in MAP_KINDS else None
        return y, make_record(self.keep, size, indices=indices, maps=maps)

    def forward_after(self, y: np.ndarray) -> np.ndarray:
        """The ``after`` layers on the pooled map (the rest of :meth:`forward`)."""
        return self._run(self.after, y)

    def backward(
        self,
        dout: np.ndarray,
        drecord: np.ndarray | None = None,
        free_caches: bool = False,
    ):
        """Gradient of the stage's input given that of its output.

        Parameters
        ----------
        dout : ndarray
            Gradient of the stage's output.
        drecord : ndarray, optional
            Gradient of the kept maps, from a decoder stage that added them
            (``DecoderStage.backward(..., return_record_grad=True)``); it
            flows back through the ``skip`` layers to the pre-pool maps.
        free_caches : bool
            Drop each layer's cache as soon as its backward is done (a
            model's training step, which lowers its peak memory).
        """
        free = free_caches
        dout = self._run_back(self.after, dout, free)
        dout = self._back(self.down_sampler, dout, free)
        if drecord is not None:
            # dout is the down-sampler's own new gradient: add in place
            np.add(dout, self._run_back(self.skip, drecord, free), out=dout)
        return self._run_back(self.order, dout, free)


class DecoderStage(Stage):
    """``before`` → up-sampler (reads the mirrored record) → ``layers``.

    Parameters
    ----------
    dtype : dtype
        Of the default up-sampler (the layers bring their own).
    before : dict or sequence of (name, layer)
        Run on the incoming map, before the up-sampler (Bayesian SegNet's
        dropout).
    up : MaxUnpool2D, Upsample or ConvTranspose2D, optional
        The up-sampler, ``MaxUnpool2D(2, 2)`` by default; see
        :data:`UP_SAMPLERS` for the record each needs. Attribute ``up_name``.
    layers : dict or sequence of (name, layer)
        Run after the up-sampler, in order.
    up_name : str
        Attribute name of the up-sampler (``"unpool"``).
    merge : {None, "add"}
        ``"add"``: add the mirrored encoder's kept maps to the output (after
        ``layers``), as FCN's decoders and SegNet-Basic-EncoderAddition do;
        the record must hold maps (:data:`MERGES`).
    """

    def __init__(
        self,
        dtype=DEFAULT_DTYPE,
        *,
        before=(),
        up=None,
        layers=(),
        up_name="unpool",
        merge=None,
    ):
        super().__init__(dtype)
        self.merge = check_choice(merge, "merge", (None, *MERGES))
        self.before: list[str] = []
        for name, layer in _named(before):
            self.add_before(name, layer)
        if up is None:
            up = MaxUnpool2D(kernel_size=2, stride=2, dtype=dtype)
        self._up_sampling = up_sampling(up)
        self.up_name = up_name
        self._attach([], up_name, up)
        for name, layer in _named(layers):
            self.add(name, layer)

    @property
    def up_sampler(self) -> Module:
        """The up-sampler (``stage.unpool`` in SegNet)."""
        return getattr(self, self.up_name)

    def add_before(self, name: str, layer: Module) -> Module:
        """Attach ``layer``; run it before the up-sampler, after the others."""
        return self._attach(self.before, name, layer)

    def parts(self):
        return (
            [(n, getattr(self, n), "layer") for n in self.before]
            + [(self.up_name, self.up_sampler, "up")]
            + [(n, getattr(self, n), "layer") for n in self.order]
        )

    def forward(self, x: np.ndarray, record: Record) -> np.ndarray:
        """Up-sample with the mirrored encoder's record, then run the layers.

        Parameters
        ----------
        x : ndarray of shape (N, C, h, w)
        record : Record
            From the mirrored :class:`EncoderStage`; for an unpool its
            indices have the shape of ``x``.

        Returns
        -------
        ndarray of shape (N, C_out, H, W)
            ``(H, W) = record.size``.

        Raises
        ------
        TypeError
            When the up-sampler needs another kind of record (an unpool handed
            :class:`FeatureMaps`).
        """
        x = self._run(self.before, x)
        x = self._run(self.order, self._up_sampling(self.up_sampler, x, record))
        if self.merge is None:
            return x
        return merged(self.merge, x, record, **self._reused(out=(x.shape, x.dtype)))

    def backward(
        self,
        dout: np.ndarray,
        return_record_grad: bool = False,
        free_caches: bool = False,
    ):
        """Gradient of the stage's (down-sampled-size) input.

        With ``return_record_grad``, return ``(dx, drecord)``: ``drecord``
        is the gradient of the record's maps when the stage added them
        (``merge="add"``: ``dout`` itself), else ``None``. ``free_caches``:
        as in :meth:`EncoderStage.backward`.
        """
        drecord = dout if self.merge == "add" else None
        dx = self._run_back(self.order, dout, free_caches)
        dx = self._back(self.up_sampler, dx, free_caches)
        dx = self._run_back(self.before, dx, free_caches)
        return (dx, drecord) if return_record_grad else dx


def conv_seeds(seed: int):
    """An endless stream of per-layer seeds drawn from the model's ``seed``."""
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(0, 2**31 - 1))


def conv_bn(
    suffix: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    relu: bool,
    dtype,
    seed: int,
) -> list[tuple[str, Module]]:
    """``[("conv{suffix}", Conv2D), ("bn{suffix}", BatchNorm2D)]`` for a stage.

    A "same"-padded convolution with bias, then batch-norm with the ReLU
    fused into it when ``relu`` (``BatchNorm2D(relu=True)``: one pass over
    the map instead of two, and no extra activation to store).
    """
    conv = Conv2D(
        in_channels,
        out_channels,
        kernel_size,
        padding=kernel_size // 2,
        bias=True,
        dtype=dtype,
        seed=seed,
    )
    bn = BatchNorm2D(out_channels, relu=relu, dtype=dtype)
    return [(f"conv{suffix}", conv), (f"bn{suffix}", bn)]


def add_conv_bn(stage: Stage, suffix: str, *args, **kwargs) -> None:
    """Append :func:`conv_bn`'s layers to ``stage`` (after its other layers)."""
    for name, layer in conv_bn(suffix, *args, **kwargs):
        stage.add(name, layer)
