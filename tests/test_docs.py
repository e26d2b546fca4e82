"""The documentation site builds without warnings, and its examples run."""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DOCS_DEPS = {
    "mkdocs": "mkdocs",
    "material": "mkdocs-material",
    "mkdocstrings": "mkdocstrings",
    "mkdocstrings_handlers.python": "mkdocstrings-python",
}


def _missing_docs_deps() -> list[str]:
    missing = []
    for module, package in DOCS_DEPS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # parent package absent
            found = False
        if not found:
            missing.append(package)
    return missing


def test_mkdocs_build_strict(tmp_path):
    missing = _missing_docs_deps()
    if missing:
        pytest.skip(
            f"docs tools not installed ({', '.join(missing)}): pip install -e '.[docs]'"
        )
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every API page rendered its module (a ::: block that resolved to nothing
    # would fail the strict build; this checks the pages are not empty).
    for page in sorted((REPO / "docs" / "api").glob("*.md")):
        modules = re.findall(r"^::: (\S+)", page.read_text(), flags=re.M)
        out = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        html = (site / "api" / out).read_text()
        for module in modules:
            assert f'id="{module}"' in html, f"{module} missing from {page.name}"


def test_concepts_examples_run():
    """The worked pool/unpool example on the Concepts page is true."""
    text = (REPO / "docs" / "concepts.md").read_text()
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, "concepts.md", str(REPO / "docs"), 0)
    assert test.examples, "no examples found on the Concepts page"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, "an example on docs/concepts.md no longer holds"


def test_nav_pages_exist():
    nav = (REPO / "mkdocs.yml").read_text()
    pages = re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", nav, flags=re.M)
    assert "index.md" in pages and "api/viz.md" in pages
    for page in pages:
        assert (REPO / "docs" / page).is_file(), f"nav lists a missing page {page}"
