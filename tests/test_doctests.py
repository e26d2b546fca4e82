"""Run the Examples sections of the public docstrings as doctests."""

import doctest
import importlib

import pytest

MODULES = [
    "npsegnet.gradcheck",
    "npsegnet.layers.pool",
    "npsegnet.layers.unpool",
    "npsegnet.models.blocks",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no doctest examples"
    assert result.failed == 0
