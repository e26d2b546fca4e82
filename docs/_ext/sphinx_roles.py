"""Griffe extension: render Sphinx cross-reference roles as inline code.

npsegnet's numpydoc docstrings use Sphinx roles such as ``:func:`save_figure```
and ``:class:`~npsegnet.layers.MaxPool2D```, which Markdown would show
literally (":func:save_figure"). This rewrites each role to plain inline code,
keeping only the last component of a ``~``-prefixed target as Sphinx does.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const|term|ref):`(~?)([^`]+)`"
)


def _code(match: re.Match) -> str:
    short, target = match.groups()
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring before it is parsed."""

    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
