"""MkDocs hook: the executed notebooks become pages of the site.

The notebooks live once, in ``notebooks/`` outside ``docs_dir``, committed with
their outputs. This hook reads the index ``notebooks/README.md`` and, for each
notebook it lists (in its order):

- adds the notebook to the site's files as ``notebooks/NAME.ipynb``, so the
  ``mkdocs-jupyter`` plugin (``execute: false``) renders it, outputs and figures
  as they were committed, at ``notebooks/NAME/``, and a Markdown link to
  ``notebooks/NAME.ipynb`` from a docs page resolves to that page;
- puts it in the navigation under the Notebooks page;
- adds, under the page's title, a link to the ``.ipynb`` itself, which
  ``include_source`` copies beside the page;
- typesets the ``$...$`` and ``$$...$$`` maths of the Markdown cells as MathML
  (``latex2mathml``), which browsers display natively: no MathJax to fetch, so
  the pages read offline like the rest of the site.

A new notebook therefore needs only its row in ``notebooks/README.md``.
"""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

from latex2mathml.converter import convert as latex_to_mathml
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]
INDEX = REPO / "notebooks" / "README.md"
# The same pattern as tests/test_notebooks_index.py: 01_some_name.ipynb
NAME = re.compile(r"\b(\d\d_[A-Za-z0-9_]+\.ipynb)\b")
NAV_PAGE = "notebooks.md"
# The rendered Markdown cells of a notebook page (they hold no nested div).
MARKDOWN_CELL = re.compile(
    r'(<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown[^>]*>)(.*?)(</div>)', re.S
)
CODE = re.compile(r"(<pre\b.*?</pre>|<code\b.*?</code>)", re.S)
DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)([^$]+?)(?<=\S)\$(?![\w$])")


def listed_notebooks() -> list[str]:
    """Notebook file names in ``notebooks/README.md``, in order, once each."""
    names = NAME.findall(INDEX.read_text(encoding="utf-8"))
    return list(dict.fromkeys(names))


def _expand_nav(items: list, pages: list[str]) -> bool:
    """Turn the nav entry of ``notebooks.md`` into a section with the notebooks."""
    for i, item in enumerate(items):
        if isinstance(item, dict):
            (title, value), *_ = item.items()
            if value == NAV_PAGE:
                items[i] = {title: [NAV_PAGE, *pages]}
                return True
            if isinstance(value, list) and _expand_nav(value, pages):
                return True
        elif item == NAV_PAGE:
            items[i] = {"Notebooks": [NAV_PAGE, *pages]}
            return True
    return False


def on_config(config, **kwargs):
    names = listed_notebooks()
    if not names:
        raise PluginError(f"{INDEX} lists no notebook")
    if config["nav"] is not None:
        _expand_nav(config["nav"], [f"notebooks/{name}" for name in names])
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files picks up the .ipynb files
def on_files(files, config, **kwargs):
    for name in listed_notebooks():
        if not (REPO / "notebooks" / name).is_file():
            raise PluginError(f"notebooks/README.md lists {name}, which does not exist")
        files.append(
            File(
                f"notebooks/{name}",
                src_dir=str(REPO),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def on_page_content(html, page, config, files, **kwargs):
    name = Path(page.file.src_uri).name
    if not (page.file.src_uri.startswith("notebooks/") and name.endswith(".ipynb")):
        return html
    link = (
        f'<p><em>This page is the notebook <a href="{name}" download>'
        f"<code>{name}</code></a> as committed, with its outputs; download it to "
        "run it (it needs <code>npsegnet</code> installed).</em></p>"
    )
    head, sep, rest = html.partition("</h1>")
    html = head + sep + link + rest if sep else link + html
    return MARKDOWN_CELL.sub(
        lambda m: m.group(1) + _typeset(m.group(2)) + m.group(3), html
    )


def _mathml(tex: str, display: str) -> str | None:
    try:
        return latex_to_mathml(html_lib.unescape(tex.strip()), display=display)
    except Exception:  # leave what cannot be converted as the TeX it was
        return None


def _typeset(fragment: str) -> str:
    """Maths of one rendered Markdown cell as MathML, code spans left alone."""

    def display(m):
        return _mathml(m.group(1), "block") or m.group(0)

    def inline(m):
        return _mathml(m.group(1), "inline") or m.group(0)

    parts = CODE.split(fragment)
    for i in range(0, len(parts), 2):  # even parts are outside <pre>/<code>
        parts[i] = INLINE_MATH.sub(inline, DISPLAY_MATH.sub(display, parts[i]))
    return "".join(parts)
