"""The notebooks index: every notebook listed, every listed notebook executed.

``pytest --nbmake notebooks/`` proves the notebooks still run; these checks are
about what is committed: the index files (``notebooks/README.md`` and
``docs/notebooks.md``) list exactly the notebooks in the folder, in order, and
each notebook was saved after a clean top-to-bottom run (outputs present, no
error, execution counts 1, 2, 3, ...), with ``%matplotlib inline`` in its first
code cell so that npsegnet's pyplot-free figures display.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "notebooks"
NOTEBOOKS = sorted(p.name for p in FOLDER.glob("*.ipynb"))
# A notebook name as written in an index: 01_some_name.ipynb
NAME = re.compile(r"\b(\d\d_[A-Za-z0-9_]+\.ipynb)\b")
MAX_BYTES = 1_500_000  # outputs stay small: figures at modest dpi


def listed(path: Path) -> list[str]:
    """Notebook names an index mentions, in first-mention order, once each."""
    names = NAME.findall(path.read_text(encoding="utf-8"))
    return list(dict.fromkeys(names))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {FOLDER}"


@pytest.mark.parametrize("index", ["notebooks/README.md", "docs/notebooks.md"])
def test_index_lists_exactly_the_notebooks_in_order(index):
    names = listed(REPO / index)
    missing = sorted(set(NOTEBOOKS) - set(names))
    stale = sorted(set(names) - set(NOTEBOOKS))
    assert not missing, f"{index} does not list {missing}"
    assert not stale, f"{index} lists notebooks that do not exist: {stale}"
    assert names == NOTEBOOKS, f"{index} lists them out of order: {names}"


def test_readme_links_resolve():
    text = (FOLDER / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+\.ipynb)\)", text)
    assert sorted(targets) == NOTEBOOKS
    for target in targets:
        assert (FOLDER / target).is_file(), target


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_executed_without_errors(name):
    path = FOLDER / name
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{name} has no code cell"
    first = "".join(code[0]["source"])
    assert "%matplotlib inline" in first, (
        f"{name}: the first code cell must run %matplotlib inline (npsegnet's "
        "figures are made without pyplot and display only then)"
    )
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{name} was not saved after one clean top-to-bottom run: execution counts "
        f"{counts}; execute it with `jupyter execute --inplace {path}` (nbclient) "
        "and commit it with its outputs"
    )
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs, f"{name} has no outputs: commit it executed"
    errors = [
        f"{o.get('ename')}: {o.get('evalue')}"
        for o in outputs
        if o.get("output_type") == "error"
    ]
    assert not errors, f"{name} holds error outputs: {errors}"
    tracebacks = [
        o["text"]
        for o in outputs
        if o.get("output_type") == "stream"
        and "Traceback (most recent call last)" in "".join(o.get("text", ""))
    ]
    assert not tracebacks, f"{name} printed a traceback: {tracebacks[0][:300]}"
    assert any("image/png" in o.get("data", {}) for o in outputs), (
        f"{name} shows no figure"
    )
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{name} is {size / 1e6:.2f} MB; keep figures small"
