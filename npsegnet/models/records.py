"""What an encoder stage hands to its mirrored decoder stage: a typed record.

SegNet's decoder stage ``k`` up-samples with something its mirrored encoder
stage ``k`` kept: the max-pool indices (SegNet), or the encoder's feature maps
themselves (FCN and SegNet-Basic-EncoderAddition, paper §3.1 and Table 1).
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

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


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


#: The name notebooks and earlier releases use for :class:`PoolIndices`.
PoolRecord = PoolIndices

#: What an encoder stage may keep for its mirror (``EncoderStage(keep=...)``).
RECORD_KINDS = {PoolIndices.kind: PoolIndices, FeatureMaps.kind: FeatureMaps}
