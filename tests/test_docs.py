"""The documentation site builds without warnings, and its examples run."""

from __future__ import annotations

import doctest
import importlib.util
import json
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
    "mkdocs_jupyter": "mkdocs-jupyter",
    "latex2mathml": "latex2mathml",
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


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built once with ``mkdocs build --strict`` (warnings fail it)."""
    missing = _missing_docs_deps()
    if missing:
        pytest.skip(
            f"docs tools not installed ({', '.join(missing)}): pip install -e '.[docs]'"
        )
    site = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return site


def test_mkdocs_build_strict(site):
    # Every API page rendered its module (a ::: block that resolved to nothing
    # would fail the strict build; this checks the pages are not empty).
    for page in sorted((REPO / "docs" / "api").glob("*.md")):
        modules = re.findall(r"^::: (\S+)", page.read_text(), flags=re.M)
        out = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        html = (site / "api" / out).read_text()
        for module in modules:
            assert f'id="{module}"' in html, f"{module} missing from {page.name}"


def _listed_notebooks() -> list[str]:
    """The notebooks the docs hook renders: those ``notebooks/README.md`` lists."""
    path = REPO / "docs" / "_ext" / "notebooks.py"
    spec = importlib.util.spec_from_file_location("_npsegnet_docs_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.listed_notebooks()


def test_notebook_pages_show_their_figures(site):
    """Each notebook is a page of the site, with every committed figure in it."""
    names = _listed_notebooks()  # that they are all the folder's: test_notebooks_index
    assert names
    index = (site / "notebooks" / "index.html").read_text(encoding="utf-8")
    for name in names:
        stem = name.removesuffix(".ipynb")
        page = site / "notebooks" / stem / "index.html"
        assert page.is_file(), f"the site has no page for {name}"
        html = page.read_text(encoding="utf-8")
        nb = json.loads((REPO / "notebooks" / name).read_text(encoding="utf-8"))
        figures = sum(
            "image/png" in output.get("data", {})
            for cell in nb["cells"]
            for output in cell.get("outputs", [])
        )
        shown = len(re.findall(r'<img[^>]+src="data:image/png;base64,', html))
        assert figures and shown == figures, (
            f"{name}: {figures} figures committed, {shown} on its page"
        )
        assert "Traceback" not in html, f"{name}: its page shows a traceback"
        # The Notebooks page links the rendered page, not the .ipynb outside
        # docs_dir, and the page offers the notebook itself for download.
        assert f'href="{stem}/"' in index, f"docs/notebooks.md does not link {stem}/"
        assert (page.parent / name).is_file(), f"{name} is not downloadable"
        assert f'href="{name}" download' in html, f"{name}: no download link"
        # The maths of the Markdown cells is MathML, no TeX left for MathJax.
        cells = re.findall(
            r'<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown[^>]*>(.*?)</div>',
            html,
            flags=re.S,
        )
        prose = [re.sub(r"<(pre|code)\b.*?</\1>", "", c, flags=re.S) for c in cells]
        tex = [c for c in prose if "$" in c]
        assert not tex, f"{name}: maths left as TeX: {tex[0][:200]}"
    home = (site / "index.html").read_text(encoding="utf-8")
    for name in names:  # the hook put them in the navigation, on every page
        assert f'href="notebooks/{name.removesuffix(".ipynb")}/"' in home, name


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
