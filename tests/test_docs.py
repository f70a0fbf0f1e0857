"""The README quickstart and the tutorial run as written."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = ["README.md", "docs/tutorial.md", "docs/dgm.md", "docs/estimators.md"]


def _blocks(path):
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), re.S)


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page):
    blocks = _blocks(page)
    assert blocks, f"{page} has no python code blocks"
    namespace = {}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page} block {i} failed: {e!r}\n{block}") from e
