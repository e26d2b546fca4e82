"""Training-time augmentation: random flips, scale jitter and crops.

367 CamVid images are few: a long run memorises them. Each training batch is
therefore shown in a random variant, drawn per image:

1. **scale jitter**: resized by a factor drawn uniformly from ``scale_range``
   (images bilinearly, labels by nearest neighbour: a label is a category,
   never an average);
2. **crop**: a random ``crop`` window; where the (shrunk) image is smaller
   than the window, it is padded with zeros and its label with the ignore
   index, so padding never counts in the loss or the metrics;
3. **horizontal flip** with probability one half (ChainerCV's recipe for
   SegNet on CamVid).

Reproducibility: the variant of image ``i`` of step ``s`` of epoch ``e`` is a
pure function of ``(seed, e, s)`` (see :func:`batch_generator`), not of a
generator shared with the rest of the run, so a run resumed mid-epoch replays
the same augmented batches bit for bit without re-drawing the skipped ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Augment", "batch_generator"]


def batch_generator(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The generator of one batch's augmentation: ``(seed, epoch, step)`` alone."""
    # A stream of its own ("augment" = 1), apart from shuffling and init.
    return np.random.default_rng([int(seed), 1, int(epoch), int(step)])


def _resize_nearest(a: np.ndarray, size_hw) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes (pixel centres aligned)."""
    h, w = a.shape[-2:]
    H, W = size_hw
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return a[..., rows[:, None], cols[None, :]]


def _resize_bilinear(a: np.ndarray, size_hw) -> np.ndarray:
    """Bilinear resize of ``(C, h, w)`` float data, half-pixel centres
    (``align_corners=False``), no antialiasing (jitter stays within 2x)."""
    h, w = a.shape[-2:]
    H, W = size_hw

    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo).astype(a.dtype)

    r0, r1, fr = axis(H, h)
    c0, c1, fc = axis(W, w)
    top = a[:, r0] * (1 - fr)[:, None] + a[:, r1] * fr[:, None]
    return top[:, :, c0] * (1 - fc) + top[:, :, c1] * fc


@dataclass(frozen=True)
class Augment:
    """Random flips, scale jitter and crops of training batches.

    Parameters
    ----------
    flip : bool
        Mirror left-right with probability 0.5.
    crop : tuple of int or None
        ``(H, W)`` of the random window; ``None`` keeps the whole image.
    scale_range : tuple of float or None
        ``(low, high)`` resize factors drawn uniformly; ``None`` keeps the size.
    ignore_index : int
        Label of padded pixels (CamVid's Unlabelled, 11).
    """

    flip: bool = True
    crop: tuple | None = None
    scale_range: tuple | None = None
    ignore_index: int = 11

    def __post_init__(self):
        if self.crop is not None:
            crop = tuple(int(c) for c in self.crop)
            if len(crop) != 2 or min(crop) < 1:
                raise ValueError(
                    f"crop must be (H, W) of positive ints, got {self.crop}"
                )
            object.__setattr__(self, "crop", crop)
        if self.scale_range is not None:
            lo, hi = (float(s) for s in self.scale_range)
            if not 0 < lo <= hi:
                raise ValueError(
                    f"scale_range must be (low, high) with 0 < low <= high, got "
                    f"{self.scale_range}"
                )
            object.__setattr__(self, "scale_range", (lo, hi))

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on."""
        return self.flip or self.crop is not None or self.scale_range is not None

    def __call__(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
        """One random variant of each image of a batch.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W), float
        y : ndarray of shape (N, H, W), int
        rng : numpy.random.Generator
            From :func:`batch_generator`.

        Returns
        -------
        x : ndarray of shape (N, C, H', W'), ``(H', W')`` = ``crop`` or ``(H, W)``
        y : ndarray of shape (N, H', W')
        """
        if x.ndim != 4 or y.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(
                f"expected x (N, C, H, W) and y (N, H, W), got {x.shape} and {y.shape}"
            )
        N, C, H, W = x.shape
        out_h, out_w = self.crop if self.crop is not None else (H, W)
        xs = np.zeros((N, C, out_h, out_w), x.dtype)
        ys = np.full((N, out_h, out_w), self.ignore_index, y.dtype)
        for n in range(N):
            # Draw every number in a fixed order whatever is switched on, so
            # a variant depends only on the generator's state.
            s = rng.uniform(*self.scale_range) if self.scale_range else 1.0
            u_top, u_left = rng.random(2)
            mirror = rng.random() < 0.5
            image, label = x[n], y[n]
            if s != 1.0:
                size = (max(1, round(H * s)), max(1, round(W * s)))
                image = _resize_bilinear(image, size)
                label = _resize_nearest(label, size)
            h, w = label.shape
            # the window's offset in the image (crop) or the image's offset in
            # the window (padding), per axis
            top = int(u_top * (abs(h - out_h) + 1))
            left = int(u_left * (abs(w - out_w) + 1))
            src_r = slice(top, top + out_h) if h >= out_h else slice(0, h)
            dst_r = slice(0, out_h) if h >= out_h else slice(top, top + h)
            src_c = slice(left, left + out_w) if w >= out_w else slice(0, w)
            dst_c = slice(0, out_w) if w >= out_w else slice(left, left + w)
            xs[n][:, dst_r, dst_c] = image[:, src_r, src_c]
            ys[n][dst_r, dst_c] = label[src_r, src_c]
            if self.flip and mirror:
                xs[n] = xs[n][:, :, ::-1]
                ys[n] = ys[n][:, ::-1]
        return xs, ys
