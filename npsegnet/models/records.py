"""What an encoder stage hands to its mirrored decoder stage: a typed record.

SegNet's decoder stage ``k`` up-samples with something its mirrored encoder
stage ``k`` kept (paper §3.1 and Table 1): the max-pool indices
(:class:`PoolIndices`, SegNet), the encoder's feature maps themselves
(:class:`FeatureMaps`, FCN), both (:class:`IndicesAndMaps`,
SegNet-Basic-EncoderAddition), or nothing but a size (:class:`PoolSize`,
bilinear or learned up-sampling alone). ``nbytes`` is what each keeps: the
decoder's memory cost (``EncoderDecoder.decoder_storage``).
Every record also carries the encoder's **pre-pool size** ``(H, W)``: a
floor-mode 2×2 pool turns 45 rows into 22, and 22 alone cannot say whether it
came from 44 or 45.

A record is a small object of its own kind rather than a bare int64 array,
so that an up-sampler can check it was handed the right thing (an unpool
given feature maps raises ``TypeError``), and so that another store of the
same information (the paper's 2 bits per 2×2 window) can slot in as another
record class without touching the stages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._checks import CompactIndices


class Record:
    """Base class of the records: each has a ``kind`` and a pre-pool ``size``."""

    kind: ClassVar[str] = "record"
    size: tuple[int, int]

    def __post_init__(self) -> None:
        h, w = self.size
        object.__setattr__(self, "size", (int(h), int(w)))


@dataclass(frozen=True, eq=False)
class PoolIndices(Record):
    """The indices a max-pool recorded, for the mirrored unpool.

    Attributes
    ----------
    indices : ndarray of int64 or CompactIndices, shape (N, C, H // 2, W // 2)
        Flat index ``h * W + w`` of each window's maximum in its ``(n, c)``
        plane of the pool's input (``docs/conventions.md``), or the same in 2
        bits a window (a :class:`~npsegnet.kernels.compact_pool.CompactIndices`
        store, what inference keeps: 32 times less).
    size : (int, int)
        ``(H, W)``, the pool's input size, which the unpool restores.
    """

    indices: np.ndarray
    size: tuple[int, int]
    kind: ClassVar[str] = "indices"

    @property
    def nbytes(self) -> int:
        """Bytes the record keeps for the decoder (the indices)."""
        return int(self.indices.nbytes)


@dataclass(frozen=True, eq=False)
class FeatureMaps(Record):
    """The encoder stage's maps before its down-sampler.

    Attributes
    ----------
    maps : ndarray of shape (N, C, H, W)
        The input of the stage's down-sampler (the output of its layers).
    size : (int, int)
        ``(H, W)``, the maps' size, which the decoder stage restores.
    """

    maps: np.ndarray
    size: tuple[int, int]
    kind: ClassVar[str] = "maps"

    @property
    def nbytes(self) -> int:
        """Bytes the record keeps for the decoder (the maps)."""
        return int(self.maps.nbytes)


@dataclass(frozen=True, eq=False)
class IndicesAndMaps(PoolIndices):
    """The pool's indices *and* the maps before the pool.

    What SegNet-Basic-EncoderAddition's decoder needs (paper §3.1): it
    unpools with the indices and adds the encoder's maps. A
    :class:`PoolIndices`, so ``MaxUnpool2D`` reads it.

    Attributes
    ----------
    indices : ndarray of int64 or CompactIndices, shape (N, C, H // 2, W // 2)
    size : (int, int)
    maps : ndarray of shape (N, C_kept, H, W)
    """

    maps: np.ndarray
    kind: ClassVar[str] = "indices+maps"

    @property
    def nbytes(self) -> int:
        """Bytes the record keeps for the decoder (indices and maps)."""
        return int(self.indices.nbytes) + int(self.maps.nbytes)


@dataclass(frozen=True, eq=False)
class PoolSize(Record):
    """Only the pool's input size: what a bilinear or learned up-sampler needs.

    The decoders of Bilinear-Interpolation and FCN-Basic-NoAddition keep
    nothing else from their encoder (Table 1's storage multiplier 0).

    Attributes
    ----------
    size : (int, int)
        ``(H, W)``, the pool's input size, which the decoder stage restores.
    """

    size: tuple[int, int]
    kind: ClassVar[str] = "size"

    @property
    def nbytes(self) -> int:
        """Bytes the record keeps for the decoder: none."""
        return 0


#: The name notebooks and earlier releases use for :class:`PoolIndices`.
PoolRecord = PoolIndices

#: What an encoder stage may keep for its mirror (``EncoderStage(keep=...)``).
RECORD_KINDS = {
    cls.kind: cls for cls in (PoolIndices, FeatureMaps, IndicesAndMaps, PoolSize)
}

#: The record kinds that hold the encoder's maps (for decoders that add them).
MAP_KINDS = (FeatureMaps.kind, IndicesAndMaps.kind)


def make_record(kind: str, size, indices=None, maps=None) -> Record:
    """The record of ``kind`` (a key of :data:`RECORD_KINDS`) from the parts.

    ``indices`` are what the pool returned, ``maps`` what the stage keeps of
    its pre-pool maps; each record class takes the fields it holds.
    """
    cls = RECORD_KINDS[kind]
    fields = {"indices": indices, "maps": maps}
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(size=size, **{k: v for k, v in fields.items() if k in names})


def _tile(a, repeat: int):
    if isinstance(a, CompactIndices):
        N, C, H, W = a.shape
        packed = np.concatenate([a.packed] * repeat, axis=0)
        return CompactIndices(packed, (repeat * N, C, H, W), a.input_size)
    return np.concatenate([a] * repeat, axis=0)


def tile_record(record: Record, repeat: int) -> Record:
    """The record of ``repeat`` copies of the batch (``np.concatenate([x] * k)``).

    Copy ``j`` of image ``n`` is batch entry ``j * N + n``. Monte-Carlo
    dropout uses it to share the records of the deterministic encoder stages
    among its samples.
    """
    if repeat == 1:
        return record
    arrays = {
        f.name: _tile(getattr(record, f.name), repeat)
        for f in dataclasses.fields(record)
        if f.name in ("indices", "maps")
    }
    return dataclasses.replace(record, **arrays)
