"""Tests of npsegnet.data: CamVid loader, synthetic set, batches, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tolerances import assert_close

from npsegnet.data import (
    CAMVID_CLASS_NAMES,
    CamVid,
    SyntheticShapes,
    batches,
    compute_mean_std,
    local_contrast_normalize,
    local_contrast_normalize_spatial,
    median_frequency_weights,
    normalize,
)

# The SegNet-Tutorial's class weights for CamVid (Models/segnet_train.prototxt).
TUTORIAL_WEIGHTS = np.array(
    [0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823]
    + [6.2478, 7.3614]
)

# --- helpers ----------------------------------------------------------------


def naive_lrn(x, size, alpha, beta, k=1.0):
    """Caffe's ACROSS_CHANNELS LRN, written out one channel at a time."""
    out = np.empty_like(x)
    channels = x.shape[1]
    for c in range(channels):
        lo, hi = max(0, c - size // 2), min(channels, c + size // 2 + 1)
        scale = k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
        out[:, c] = x[:, c] / scale**beta
    return out


def write_fake_camvid(root, names=("a", "b", "c"), size=(12, 16), split="train"):
    """A tiny CamVid in the tutorial layout, lists holding Caffe-style paths."""
    rng = np.random.default_rng(0)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(exist_ok=True)
    lines = []
    for name in names:
        image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        label = rng.integers(0, 12, size=size, dtype=np.uint8)
        Image.fromarray(image).save(root / split / f"{name}.png")
        Image.fromarray(label, mode="L").save(root / f"{split}annot" / f"{name}.png")
        lines.append(
            f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png"
        )
    (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


class IndexSet:
    """A data set whose label records the index: to see which items a batch holds."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((3, 2, 2), i / 100, np.float32), np.full((2, 2), i, np.int64)


# --- SyntheticShapes ------------------------------------------------------------


def test_synthetic_shapes_dtypes_and_values():
    ds = SyntheticShapes(num_images=16, image_size=(33, 47), seed=3)
    assert len(ds) == 16 and ds.image_size == (33, 47)
    assert ds.num_classes == 5 and ds.ignore_index == 5
    assert len(ds.class_names) == ds.num_classes
    x, y = ds[0]
    assert x.shape == (3, 33, 47) and x.dtype == np.float32
    assert y.shape == (33, 47) and y.dtype == np.int64
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    counts = np.bincount(ds.labels.ravel(), minlength=6)
    assert counts.size == 6 and (counts > 0).all()  # every class and ignored borders
    assert counts[5] < counts[0]  # borders are thin
    np.testing.assert_array_equal(ds.label(2), ds[2][1])


def test_synthetic_shapes_deterministic():
    a = SyntheticShapes(num_images=6, image_size=(24, 30), seed=7)
    b = SyntheticShapes(num_images=6, image_size=(24, 30), seed=7)
    c = SyntheticShapes(num_images=6, image_size=(24, 30), seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    # Image i does not depend on how many images are asked for.
    d = SyntheticShapes(num_images=3, image_size=(24, 30), seed=7)
    np.testing.assert_array_equal(d.images, a.images[:3])


def test_synthetic_shapes_colours_separate_classes():
    # The learnability the training default relies on: mean colours of the
    # classes differ, and shapes are textured (spread larger than the noise).
    ds = SyntheticShapes(num_images=32, seed=0)
    pixels = ds.images.transpose(1, 0, 2, 3).reshape(3, -1)
    labels = ds.labels.ravel()
    means = np.stack([pixels[:, labels == c].mean(axis=1) for c in range(5)])
    gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert gaps[np.triu_indices(5, 1)].min() > 0.1


@pytest.mark.parametrize(
    "kwargs, err",
    [
        ({"num_images": 0}, ValueError),
        ({"image_size": (7, 20)}, ValueError),
        ({"image_size": 32}, ValueError),
        ({"seed": -1}, ValueError),
        ({"seed": 1.5}, TypeError),
    ],
)
def test_synthetic_shapes_bad_arguments(kwargs, err):
    with pytest.raises(err):
        SyntheticShapes(**kwargs)


# --- batches -------------------------------------------------------------------


def test_batches_shapes_and_last_batch():
    ds = SyntheticShapes(num_images=10, image_size=(16, 20), seed=0)
    out = list(batches(ds, 4, shuffle=False))
    assert [x.shape[0] for x, _ in out] == [4, 4, 2]
    x, y = out[0]
    assert x.shape == (4, 3, 16, 20) and x.dtype == np.float32
    assert y.shape == (4, 16, 20) and y.dtype == np.int64
    np.testing.assert_array_equal(x[1], ds[1][0])
    assert [x.shape[0] for x, _ in batches(ds, 4, drop_last=True, rng=0)] == [4, 4]


def test_batches_shuffle_reproducible_and_complete():
    ds = IndexSet(11)

    def visit(rng):
        return np.concatenate([y[:, 0, 0] for _, y in batches(ds, 3, rng=rng)])

    first = visit(np.random.default_rng(5))
    assert sorted(first) == list(range(11))  # every item exactly once
    np.testing.assert_array_equal(first, visit(np.random.default_rng(5)))
    np.testing.assert_array_equal(first, visit(5))
    assert not np.array_equal(first, np.arange(11))
    # One generator across epochs: reproducible run, different epochs.
    g = np.random.default_rng(5)
    epoch1, epoch2 = visit(g), visit(g)
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(epoch1, first)


def test_batches_bad_arguments():
    ds = IndexSet(3)
    with pytest.raises(ValueError, match="batch_size"):
        batches(ds, 0)
    with pytest.raises(TypeError, match="rng"):
        batches(ds, 2, rng="seed")


# --- normalisation ---------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3, 8])
def test_lrn_matches_caffe_formula(rng, channels):
    x = rng.uniform(0, 255, size=(2, channels, 5, 7))
    np.testing.assert_allclose(
        local_contrast_normalize(x), naive_lrn(x, 5, 1e-4, 0.75), rtol=1e-12
    )
    np.testing.assert_allclose(
        local_contrast_normalize(x, size=3, alpha=0.5, beta=0.5, k=2.0),
        naive_lrn(x, 3, 0.5, 0.5, 2.0),
        rtol=1e-12,
    )


def test_lrn_float32_3d_and_torch(rng, torch):
    x = rng.uniform(0, 255, size=(2, 3, 6, 9)).astype(np.float32)
    out = local_contrast_normalize(x)
    assert out.dtype == np.float32
    ref = torch.nn.functional.local_response_norm(torch.from_numpy(x), 5, 1e-4, 0.75)
    assert_close(out, ref.numpy(), reduction=5)  # sums of 5 channels
    np.testing.assert_array_equal(local_contrast_normalize(x[0]), out[0])


def test_lrn_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        local_contrast_normalize(np.zeros((1, 3, 2, 2)), size=4)
    with pytest.raises(TypeError, match="float32 or float64"):
        local_contrast_normalize(np.zeros((1, 3, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        local_contrast_normalize(np.zeros((3, 2)))


def test_spatial_lcn(rng):
    x = rng.uniform(0, 1, size=(2, 3, 15, 17)).astype(np.float32)
    out = local_contrast_normalize_spatial(x, size=5)
    assert out.shape == x.shape and out.dtype == np.float32
    # Removes a global brightness offset and a global contrast factor.
    # window sums of 5 x 5 x 3 values (and their squares)
    assert_close(
        local_contrast_normalize_spatial(3 * x + 0.5, size=5), out, reduction=75
    )
    # The centre pixel is centred by its full 5x5x3 window.
    window = x[0, :, 5:10, 6:11].astype(np.float64)
    centred = x[0, :, 7, 8] - window.mean()
    ratio = out[0, :, 7, 8] / centred
    assert_close(ratio, np.full(3, ratio[0]), dtype=np.float32, reduction=75)
    assert np.all(local_contrast_normalize_spatial(np.ones((3, 6, 6))) == 0)
    with pytest.raises(ValueError, match="odd"):
        local_contrast_normalize_spatial(x, size=4)


def test_mean_std_and_normalize():
    ds = SyntheticShapes(num_images=5, image_size=(10, 12), seed=1)
    mean, std = compute_mean_std(ds)
    assert mean.shape == (3,) and mean.dtype == np.float32
    pixels = ds.images.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
    count = pixels.shape[1]
    assert_close(mean, pixels.mean(axis=1), dtype=np.float32, reduction=count)
    assert_close(std, pixels.std(axis=1), dtype=np.float32, reduction=count)
    z = normalize(ds.images, mean, std)
    assert z.dtype == np.float32
    # z is float32; its mean and std are sums of `count` values of size O(1)
    assert_close(
        z.mean(axis=(0, 2, 3)),
        np.zeros(3),
        dtype=np.float32,
        reduction=count,
        scale=1.0,
    )
    assert_close(z.std(axis=(0, 2, 3)), np.ones(3), dtype=np.float32, reduction=count)
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(ds.images, mean, np.zeros(3))
    with pytest.raises(ValueError, match=r"mean must have shape \(3,\)"):
        normalize(ds.images, mean[:2], std)


# --- median frequency weights --------------------------------------------------------


def test_median_frequency_weights_hand_example():
    # K = 4, ignore 255. Image A: 3 px of 0, 1 of 1; image B: 2 of 1, 1 of 2, 1 ignored.
    # freq(0) = 3/4 (only in A), freq(1) = 3/8 (both), freq(2) = 1/4 (only B; the
    # ignored pixel counts in B's total).  median(3/4, 3/8, 1/4) = 3/8, so
    # w = (1/2, 1, 3/2); class 3 never appears: 0.
    a = np.array([[0, 0], [0, 1]], dtype=np.uint8)
    b = np.array([[1, 1], [2, 255]], dtype=np.uint8)
    w = median_frequency_weights([a, b], num_classes=4, ignore_index=255)
    assert w.dtype == np.float32
    assert_close(w, [1 / 2, 1, 3 / 2, 0], dtype=np.float32, reduction=4)
    # (image, label) tuples give the same.
    w2 = median_frequency_weights([(None, a), (None, b)], 4, ignore_index=255)
    np.testing.assert_array_equal(w, w2)


def test_median_frequency_weights_data_set_and_errors():
    ds = SyntheticShapes(num_images=6, image_size=(20, 24), seed=2)
    w = median_frequency_weights(ds, ds.num_classes, ds.ignore_index)
    ref = median_frequency_weights(list(ds.labels), ds.num_classes, ds.ignore_index)
    np.testing.assert_array_equal(w, ref)
    assert w[0] < 1.0  # the background is the most frequent class
    with pytest.raises(ValueError, match="value 5"):
        median_frequency_weights(list(ds.labels), ds.num_classes)  # 5 not ignored
    with pytest.raises(ValueError, match="value -1"):
        median_frequency_weights([np.array([0, -1])], 2)
    with pytest.raises(TypeError, match="integer"):
        median_frequency_weights([np.zeros(3)], 2)
    with pytest.raises(ValueError, match="no labels"):
        median_frequency_weights([], 2)


# --- CamVid loader on a fake folder ---------------------------------------------


def test_camvid_fake_folder(tmp_path):
    root = write_fake_camvid(tmp_path)
    ds = CamVid(root, "train", cache=True)
    assert len(ds) == 3 and ds.image_size == (12, 16)
    assert ds.files[1] == (root / "train" / "b.png", root / "trainannot" / "b.png")
    x, y = ds[1]
    assert x.shape == (3, 12, 16) and x.dtype == np.float32
    assert y.shape == (12, 16) and y.dtype == np.int64
    image = np.asarray(Image.open(root / "train" / "b.png"))
    assert_close(x, image.transpose(2, 0, 1) / 255, dtype=np.float32)
    np.testing.assert_array_equal(y, np.asarray(Image.open(ds.files[1][1])))
    assert ds.load_uint8(1)[0] is ds.load_uint8(-2)[0]  # cached
    with pytest.raises(IndexError):
        ds[3]

    half = CamVid(root, "train", scale=0.5, cache=False)
    assert half.image_size == (6, 8)
    xh, yh = half[1]
    assert xh.shape == (3, 6, 8) and yh.shape == (6, 8)
    # BOX: each output pixel is the mean of a 2x2 block; labels are picked, not mixed.
    blocks = image.reshape(6, 2, 8, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1)
    np.testing.assert_allclose(xh * 255, blocks, atol=1.0)  # Pillow rounds
    assert set(np.unique(yh)) <= set(np.unique(y))
    np.testing.assert_array_equal(half.label(1), yh)  # label-only path, uncached
    assert half.label(-1).dtype == np.int64 and not half._cache
    bilinear = CamVid(root, "train", scale=0.5, resample="bilinear")
    assert bilinear[1][0].shape == (3, 6, 8)


def test_camvid_missing_files(tmp_path):
    root = write_fake_camvid(tmp_path)
    with pytest.raises(FileNotFoundError, match="test.txt"):
        CamVid(root, "test")
    (root / "trainannot" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"trainannot[/\\]b\.png"):
        CamVid(root, "train")


def test_camvid_test_split_when_present(tmp_path):
    root = write_fake_camvid(tmp_path, names=("t1", "t2"), split="test")
    ds = CamVid(root, "test")
    assert len(ds) == 2 and ds[0][0].shape == (3, 12, 16)


@pytest.mark.parametrize("problem", ["size", "unreadable", "value", "rgb", "line"])
def test_camvid_bad_files(tmp_path, problem):
    root = write_fake_camvid(tmp_path)
    bad = root / "trainannot" / "c.png"
    if problem == "size":
        Image.fromarray(np.zeros((12, 15), np.uint8), mode="L").save(bad)
        err, match = ValueError, r"c\.png.*12x15"
    elif problem == "unreadable":
        bad = root / "train" / "c.png"
        bad.write_bytes(b"not a png at all")
        err, match = ValueError, r"cannot read image .*c\.png"
    elif problem == "value":
        Image.fromarray(np.full((12, 16), 200, np.uint8), mode="L").save(bad)
        err, match = ValueError, r"c\.png holds the value 200"
    elif problem == "rgb":
        Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(bad)
        err, match = ValueError, r"c\.png has PIL mode 'RGB'"
    else:
        with open(root / "train.txt", "a") as f:
            f.write("only_one_path.png\n")
        with pytest.raises(ValueError, match="line 4"):
            CamVid(root, "train")
        return
    ds = CamVid(root, "train")
    ds[0]  # the good files still load
    with pytest.raises(err, match=match):
        ds[2]
    with pytest.raises(err, match=match):  # the label-only path checks too
        ds.label(2)


def test_camvid_image_of_other_size(tmp_path):
    root = write_fake_camvid(tmp_path)
    for folder in ("train", "trainannot"):
        mode = "RGB" if folder == "train" else "L"
        shape = (10, 16, 3) if folder == "train" else (10, 16)
        Image.fromarray(np.zeros(shape, np.uint8), mode=mode).save(
            root / folder / "c.png"
        )
    with pytest.raises(ValueError, match="first image of the split is 12x16"):
        CamVid(root, "train")[2]


def test_camvid_bad_arguments(tmp_path):
    root = write_fake_camvid(tmp_path)
    with pytest.raises(ValueError, match="scale"):
        CamVid(root, scale=0)
    with pytest.raises(TypeError, match="scale"):
        CamVid(root, scale="half")
    with pytest.raises(ValueError, match="resample"):
        CamVid(root, resample="lanczos")


# --- the real CamVid (skips without it) ---------------------------------------------


def test_camvid_real_splits(camvid):
    train = CamVid(camvid, "train")
    val = CamVid(camvid, "val", scale=0.5, cache=False)
    assert len(train) == 367 and len(val) == 101
    assert train.class_names == CAMVID_CLASS_NAMES and len(CAMVID_CLASS_NAMES) == 11
    assert train.image_size == (360, 480) and val.image_size == (180, 240)
    for ds, shape in ((train, (360, 480)), (val, (180, 240))):
        for i in (0, len(ds) - 1):
            x, y = ds[i]
            assert x.shape == (3, *shape) and x.dtype == np.float32
            assert y.shape == shape and y.dtype == np.int64
            assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
            assert 0 <= y.min() and y.max() <= 11


def test_camvid_median_frequency_weights(camvid):
    train = CamVid(camvid, "train", cache=False)
    w = median_frequency_weights(train, train.num_classes, train.ignore_index)
    # Our definition on the tutorial's own train split gives, for classes 0..10,
    # 0.2793 0.2017 4.7865 0.1490 1.0000 0.4217 3.8467 1.9736 0.7889 6.3747 8.8587
    # (the median class, Pavement, gets exactly 1). Ten of the eleven are within
    # 21 % of the published weights; SignSymbol is 2.5x lower than the published
    # 9.6446 (the published ones cannot come from these labels: they rank
    # SignSymbol, which has more pixels than Pole here, far rarer than Pole).
    ratio = w / TUTORIAL_WEIGHTS
    sign = CAMVID_CLASS_NAMES.index("SignSymbol")
    others = np.delete(ratio, sign)
    assert np.all(np.abs(others - 1) < 0.21), ratio
    assert 0.35 < ratio[sign] < 0.45
    np.testing.assert_allclose(w[CAMVID_CLASS_NAMES.index("Pavement")], 1.0)
    # Same ranking of rare and frequent classes as the tutorial, SignSymbol aside.
    np.testing.assert_array_equal(
        np.argsort(np.delete(w, sign)), np.argsort(np.delete(TUTORIAL_WEIGHTS, sign))
    )
