"""A small, deterministic segmentation set generated here: textured shapes on
textured backgrounds, so that training can be tried without any download."""

from __future__ import annotations

import numpy as np

from .._checks import check_positive_int

__all__ = ["SyntheticShapes"]

_SHAPE_NAMES = ("background", "disc", "rectangle", "triangle", "bar")


# Mean colour of each shape class (RGB); each shape draws its own colour around it.
_SHAPE_COLOURS = np.array(
    [
        [0.85, 0.30, 0.25],  # disc: red
        [0.25, 0.40, 0.85],  # rectangle: blue
        [0.30, 0.75, 0.35],  # triangle: green
        [0.85, 0.75, 0.25],  # bar: yellow
    ]
)


def _smooth_texture(rng, yy, xx, waves: int, amplitude: float) -> np.ndarray:
    """A sum of ``waves`` random plane waves: a cheap smooth texture in [-a, a]."""
    out = np.zeros(yy.shape)
    for _ in range(waves):
        freq = rng.uniform(0.05, 0.35)
        angle = rng.uniform(0.0, np.pi)
        phase = rng.uniform(0.0, 2 * np.pi)
        out += np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    return out * (amplitude / waves)


class SyntheticShapes:
    """Textured shapes on textured backgrounds: a data set made on the spot.

    Every image holds 2 to 4 shapes, drawn in turn (later ones occlude earlier
    ones), on a greyish background with a random tint and a wavy texture:

    ====  ==========  ==================================================
    0     background  low-saturation colour, smooth waves
    1     disc        red-ish, shaded brighter towards its centre
    2     rectangle   blue-ish, axis-aligned, checkerboard texture
    3     triangle    green-ish, stripes along a random direction
    4     bar         yellow-ish, long and thin, at any angle, cross stripes
    5     ignored     the one-pixel line where two regions meet
    ====  ==========  ==================================================

    Colours vary per shape around the class colour, each image gets a random
    gain and offset (illumination) and pixel noise, so neither one colour
    threshold nor one texture filter labels it: the network must use both
    colour, texture and shape. The ignored borders exercise ``ignore_index``.

    Parameters
    ----------
    num_images : int
        Number of images.
    image_size : tuple of int
        ``(H, W)``; odd sizes are fine; each side at least 8.
    seed : int
        Image ``i`` is generated from ``np.random.default_rng([seed, i])``, so
        the same seed gives identical data (and image ``i`` does not depend on
        ``num_images``); different seeds give different data.

    Attributes
    ----------
    num_classes : int
        5.
    ignore_index : int
        5.
    class_names : tuple of str
        ``("background", "disc", "rectangle", "triangle", "bar")``.
    image_size : tuple of int
        ``(H, W)``.
    images : ndarray of shape (num_images, 3, H, W), float32
    labels : ndarray of shape (num_images, H, W), uint8

    Examples
    --------
    >>> ds = SyntheticShapes(num_images=4, image_size=(33, 47), seed=1)
    >>> x, y = ds[0]
    >>> x.shape, x.dtype, y.shape, y.dtype
    ((3, 33, 47), dtype('float32'), (33, 47), dtype('int64'))
    """

    num_classes = 5
    ignore_index = 5
    class_names = _SHAPE_NAMES

    def __init__(self, num_images: int = 64, image_size=(64, 80), seed: int = 0):
        num_images = check_positive_int(num_images, "num_images")
        if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
            raise ValueError(f"image_size must be a pair (H, W), got {image_size!r}")
        height = check_positive_int(image_size[0], "image_size[0]", minimum=8)
        width = check_positive_int(image_size[1], "image_size[1]", minimum=8)
        seed = check_positive_int(seed, "seed", minimum=0)
        self.seed = seed
        self.image_size = (height, width)
        self.images = np.empty((num_images, 3, height, width), dtype=np.float32)
        self.labels = np.empty((num_images, height, width), dtype=np.uint8)
        for i in range(num_images):
            self.images[i], self.labels[i] = self._generate(
                np.random.default_rng([seed, i])
            )

    def _generate(self, rng) -> tuple[np.ndarray, np.ndarray]:
        height, width = self.image_size
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        size = min(height, width)

        tint = rng.uniform(0.35, 0.65) + rng.uniform(-0.08, 0.08, size=3)
        image = tint[:, None, None] + _smooth_texture(rng, yy, xx, 3, 0.12)[None]
        label = np.zeros((height, width), dtype=np.uint8)

        for _ in range(rng.integers(2, 5)):
            cls = int(rng.integers(1, 5))
            cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
            radius = rng.uniform(0.12, 0.25) * size
            # One shape in five borrows another class's colour: only its
            # texture and outline tell what it is.
            family = cls if rng.random() >= 0.2 else int(rng.integers(1, 5))
            colour = _SHAPE_COLOURS[family - 1] + rng.uniform(-0.12, 0.12, size=3)
            if cls == 1:
                dist2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2
                mask = dist2 <= 1.0
                shade = 0.2 * (0.5 - dist2)
            elif cls == 2:
                half_h = radius * rng.uniform(0.6, 1.2)
                half_w = radius * rng.uniform(0.6, 1.2)
                mask = (np.abs(yy - cy) <= half_h) & (np.abs(xx - cx) <= half_w)
                period = rng.integers(3, 6)
                checker = ((yy // period + xx // period) % 2) * 2.0 - 1.0
                shade = 0.12 * checker
            elif cls == 3:
                theta = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
                vy, vx = (
                    cy + 1.3 * radius * np.sin(theta),
                    cx + 1.3 * radius * np.cos(theta),
                )
                mask = np.ones((height, width), dtype=bool)
                for k in range(3):  # inside = on the inner side of all three edges
                    ay, ax = vy[k], vx[k]
                    by, bx = vy[(k + 1) % 3], vx[(k + 1) % 3]
                    oy, ox = vy[(k + 2) % 3], vx[(k + 2) % 3]
                    side = (bx - ax) * (yy - ay) - (by - ay) * (xx - ax)
                    mask &= side * ((bx - ax) * (oy - ay) - (by - ay) * (ox - ax)) >= 0
                angle = rng.uniform(0, np.pi)
                along = np.cos(angle) * xx + np.sin(angle) * yy
                shade = 0.12 * np.sign(np.sin(along * 2 * np.pi / 4.0))
            else:
                angle = rng.uniform(0, np.pi)
                u = np.cos(angle) * (xx - cx) + np.sin(angle) * (yy - cy)
                v = -np.sin(angle) * (xx - cx) + np.cos(angle) * (yy - cy)
                half_len = rng.uniform(1.5, 2.5) * radius
                half_width = max(1.5, rng.uniform(0.15, 0.3) * radius)
                mask = (np.abs(u) <= half_len) & (np.abs(v) <= half_width)
                shade = 0.12 * np.sign(np.sin(u * 2 * np.pi / 5.0))
            image[:, mask] = (colour[:, None] + shade[mask][None]).astype(image.dtype)
            label[mask] = cls

        # Illumination and sensor noise: no absolute colour threshold is exact.
        gain, offset = rng.uniform(0.7, 1.15), rng.uniform(-0.08, 0.08)
        image = image * gain + offset + rng.normal(0.0, 0.04, size=image.shape)
        image = np.clip(image, 0.0, 1.0).astype(np.float32)

        # One-pixel ignored line where two regions meet (on the top/left side).
        border = np.zeros((height, width), dtype=bool)
        border[:, :-1] |= label[:, :-1] != label[:, 1:]
        border[:-1, :] |= label[:-1, :] != label[1:, :]
        label[border] = self.ignore_index
        return image, label

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(num_images={len(self)}, image_size={self.image_size}, "
            f"seed={self.seed})"
        )

    def __getitem__(self, i) -> tuple[np.ndarray, np.ndarray]:
        """Image float32 ``(3, H, W)`` in ``[0, 1]`` and label int64 ``(H, W)``."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        return self.images[i].copy(), self.labels[i].astype(np.int64)

    def label(self, i) -> np.ndarray:
        """The label of item ``i`` alone, int64 ``(H, W)``."""
        return self.labels[i].astype(np.int64)
