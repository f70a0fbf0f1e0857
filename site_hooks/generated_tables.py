"""A mkdocs hook: the API pages' generated parts, made from the code at build time.

``<!-- distribution-table -->`` on a page becomes the table of the built-in
distributions (their parameters, domains, supports and default strategies), so
the reference cannot fall behind the code.
"""

from __future__ import annotations

import ppl
from ppl._distribution_docs import markdown_table

MARKER = "<!-- distribution-table -->"


def _built_in_distributions() -> dict:
    named = {n: getattr(ppl, n) for n in ppl.__all__}
    # improper_uniform is a flat prior, not a numpyro distribution; its own entry says so
    return {
        n: d.factory
        for n, d in named.items()
        if isinstance(d, ppl.Distribution) and n != "improper_uniform"
    }


def on_page_markdown(markdown: str, **_) -> str:
    """Replace the marker with the distributions' table (mkdocs calls this per page)."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, markdown_table(_built_in_distributions()))
