"""The README and every page of the docs run as written.

Each page's ``python`` code blocks run in order in one namespace, as a reader
would paste them. Fragments (a call whose inputs the page does not build) and
code for other libraries (the comparison page) are fenced ``py``: highlighted the
same, not run.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = ["README.md"] + sorted(
    str(p.relative_to(ROOT))
    for p in (ROOT / "docs").rglob("*.md")
    if "```python\n" in p.read_text()
)


def _blocks(path):
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), re.S)


def test_the_pages_a_reader_starts_from_have_code():
    for page in ["README.md", "docs/index.md", "docs/tutorial.md"]:
        assert page in PAGES, f"{page} has no python code blocks"


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page):
    namespace = {}
    for i, block in enumerate(_blocks(page)):
        try:
            exec(compile(block, f"{page}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page} block {i} failed: {e!r}\n{block}") from e


def test_home_page_code_is_the_quickstart_example():
    """The figure on the home page is drawn by examples/quickstart.py, so the code
    shown there must be that file's, word for word."""
    example = (ROOT / "examples" / "quickstart.py").read_text()
    shown = example.split("# --- the home page's code ---\n")[1].split("# --- end of")[0]
    lines = [line for line in shown.splitlines() if line.strip()]  # the page drops blank lines
    assert lines == [line for line in _blocks("docs/index.md")[0].splitlines() if line.strip()]
