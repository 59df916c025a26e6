"""docs/arithmetic.md stays true: its example runs and prints what the page shows, and its
doctest-style lines pass."""

from __future__ import annotations

import contextlib
import doctest
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "arithmetic.md"


def test_runnable_example_prints_what_the_page_shows():
    text = DOC.read_text(encoding="utf-8")
    code, printed = re.search(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", text, re.S).groups()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    assert out.getvalue() == printed


def test_doctest_lines():
    text = DOC.read_text(encoding="utf-8")
    import layerlab.arith as arith

    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, dict(vars(arith)), "arithmetic.md", str(DOC), 0)
    assert test.examples, "the page lost its >>> examples"
    result = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE).run(test)
    assert result.failed == 0
