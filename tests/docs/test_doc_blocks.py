"""Every fenced block of README.md and docs/**/*.md runs, and prints what the page shows.

A page is read top to bottom; each fenced block is one of:

- **python**: executed, the page's blocks sharing one namespace and one working directory (a fresh
  ``tmp_path``, so ``runs/...`` lands there; its ``tests`` links to the repository's, so a page can
  name a committed test fixture by its path from the repository root). A block made of ``>>>`` lines is a doctest (ELLIPSIS,
  NORMALIZE_WHITESPACE). A block whose first line is ``# NAME.py`` (on any page) is written to
  ``NAME.py`` in the working directory of every page before it runs.
- **console**: a block whose first line starts with ``$ `` (tagged ``console``, ``text`` or not at
  all). Each ``$ layerlab ...`` line (``\\`` continues a line, ``#`` starts a comment) runs
  in-process through ``layerlab.cli.main.main``; the lines after it, up to the next ``$``, are what
  it prints (stdout and stderr together). The exit status must be 0, or 2 when the page shows an
  ``error:`` line, or 1 when it shows a "no ... maps" answer (the documented statuses).
- **output**: a block right after a python or console block, with nothing or one short line
  ("Output:", "prints") between them: what that block prints (for a doctest, what its last
  example without output prints).
- **not run**: a block preceded by ``<!-- not-run: REASON -->``. These are listed in ``NOT_RUN``
  below, so adding one is a visible change.

Expected output is compared line by line with trailing spaces removed; ``...`` (or ``…``) stands
for any text, including several lines.

Every picture a page shows from ``docs/img`` is drawn by a command on the same page: after the page
ran, the file exists in the working directory and has the committed picture's pixels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import doctest
import io
import pathlib
import re
import shlex

import numpy as np
import pytest
from matplotlib.image import imread

from layerlab.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "layers").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\S*)\s*$")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")
NOT_RUN_MARK = re.compile(r"^\s*<!-- not-run: (.+?) -->\s*$")
SHORT_LEAD = re.compile(r"^(Output:|prints:?)?$")

# the reasons of the blocks marked <!-- not-run: REASON -->, page by page, in page order
NOT_RUN = {
    "README.md": ["`make` builds a virtual environment and trains 8 models", "trains 8 models, about 1 min",
                  "starts a server that runs until Ctrl-C"],
    "docs/ARCHITECTURE.md": ["signatures"] * 4,
    "docs/arithmetic.md": ["formula"],
    "docs/benchmarks.md": ["benchmark output, minutes", "benchmark output, 78 s",
                           "benchmark output, 15 s, needs headless Chromium",
                           "benchmark output, 37 s, needs headless Chromium",
                           "benchmark output, 3.5 min on a busy machine",
                           "benchmark output, 20 s"],
    "docs/cli.md": ["usage synopsis"] * 2,
    "docs/compare.md": ["trains 8 models, about 1 min", "trains 24 models, about 2 min",
                        "the four sweeps of this section, up to an hour each on a busy 2-core machine", "usage synopsis",
                        "schema example with values of the default run"],
    "docs/serve.md": ["starts a server that runs until Ctrl-C", "usage synopsis"],
    "docs/summary.md": ["signatures", "installs four tools with pip, about 1 min"],
    "docs/zoo.md": ["trains 12 models, 73 s of CPU time"],
    "docs/training.md": ["trains 15 epochs, 13 s of CPU time", "needs torchrun and two processes"],
    "docs/layers/lowrank.md": ["formula"],
    **{f"docs/layers/{name}.md": ["formula"] for name in ("conv", "dense", "flatten", "local", "normalisation",
                                                          "pooling", "tiled")},
}


@dataclasses.dataclass
class Block:
    page: pathlib.Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    lead: str  # the text between the previous block and this one
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_console(self) -> bool:
        return self.lang in ("console", "text", "") and self.text.lstrip().startswith("$ ")

    @property
    def is_python(self) -> bool:
        return self.lang == "python"


def blocks_of(page: pathlib.Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    lead_start = 0
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = len(m.group(1)), m.group(2)
        end = i + 1
        while not re.match(r"^ *```\s*$", lines[end]):
            end += 1
        body = "\n".join(line[indent:] for line in lines[i + 1:end])
        lead_lines = lines[lead_start:i]
        before = [line for line in lead_lines if line.strip()]
        marker = NOT_RUN_MARK.match(before[-1]) if before else None
        blocks.append(Block(page, i + 1, lang, body, "\n".join(lead_lines).strip(),
                            marker.group(1) if marker else None))
        lead_start = end + 1
        i = end + 1
    return blocks


def same_output(shown: str, printed: str) -> bool:
    """``printed`` matches ``shown``, ``...``/``…`` in ``shown`` standing for any text."""
    want = "\n".join(line.rstrip() for line in shown.replace("…", "...").strip("\n").split("\n"))
    got = "\n".join(line.rstrip() for line in printed.replace("…", "...").strip("\n").split("\n"))
    return doctest.OutputChecker().check_output(want + "\n", got + "\n", doctest.ELLIPSIS)


def console_commands(text: str) -> list[tuple[list[str], str]]:
    """``[(argv, shown output)]`` of a console block; continuation lines (``\\``) are joined."""
    commands: list[tuple[list[str], str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), f"console block line {lines[i]!r} is neither a command nor its output"
        command = lines[i][2:]
        while command.rstrip().endswith("\\"):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        commands.append((shlex.split(command, comments=True), "\n".join(shown).strip("\n")))
    return commands


def run_command(argv: list[str], where: str) -> tuple[int, str]:
    assert argv[0] == "layerlab", f"{where}: only `layerlab` commands run here; mark others with <!-- not-run: ... -->"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = main(argv[1:])
    return status, out.getvalue()


def expected_status(shown: str) -> int:
    if re.search(r"^layerlab \w+: error:", shown, re.M):
        return 2
    if re.match(r"no \w+ maps ", shown):
        return 1
    return 0


def example_files() -> dict[str, str]:
    """``{NAME.py: text}`` of the python blocks, on any page, whose first line is ``# NAME.py``."""
    files = {}
    for page in PAGES:
        for block in blocks_of(page):
            first = block.text.split("\n")[0]
            if block.is_python and re.fullmatch(r"# [\w.-]+\.py", first):
                files[first[2:]] = block.text
    return files


def output_of(blocks: list[Block], k: int) -> Block | None:
    """The block after ``blocks[k]`` when it shows what ``blocks[k]`` prints."""
    if k + 1 < len(blocks):
        nxt = blocks[k + 1]
        if not (nxt.not_run or nxt.is_python or nxt.is_console) and SHORT_LEAD.match(nxt.lead):
            return nxt
    return None


def run_page(page: pathlib.Path) -> list[str]:
    """Run every block of ``page`` in the current directory; returns the not-run reasons."""
    namespace: dict = {"__name__": "__doc_example__"}
    skipped: list[str] = []
    blocks = blocks_of(page)
    for name, text in example_files().items():
        pathlib.Path(name).write_text(text, encoding="utf-8")
    for k, block in enumerate(blocks):
        shown = output_of(blocks, k)
        if block.not_run:
            skipped.append(block.not_run)
        elif block.is_python:
            run_python(block, shown, namespace)
        elif block.is_console:
            run_console(block, shown)
        else:
            before = blocks[k - 1] if k else None
            assert before and (before.is_python or before.is_console) and not before.not_run \
                and output_of(blocks, k - 1) is block, (
                    f"{block.where}: a fenced block that is neither python, console, the output of the block "
                    f"before it, nor marked <!-- not-run: reason -->")
    return skipped


def run_python(block: Block, shown: Block | None, namespace: dict) -> None:
    if block.text.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(block.text, namespace, block.where, str(block.page), block.line)
        test.globs = namespace  # DocTest copies its globals; the page's blocks share one namespace
        if shown is not None:
            assert not test.examples[-1].want, f"{shown.where}: the doctest before it already shows its output"
            test.examples[-1].want = shown.text.replace("…", "...").rstrip("\n") + "\n"
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report = io.StringIO()
        runner.run(test, out=report.write, clear_globs=False)
        assert runner.failures == 0, f"{block.where}:\n{report.getvalue()}"
        return
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.text, block.where, "exec"), namespace)
    if shown is not None:
        assert same_output(shown.text, out.getvalue()), f"{shown.where}: {block.where} printed\n{out.getvalue()}"


def run_console(block: Block, shown_after: Block | None) -> None:
    commands = console_commands(block.text)
    for n, (argv, shown) in enumerate(commands):
        if n == len(commands) - 1 and shown_after is not None:
            assert not shown, f"{shown_after.where}: the command before it already shows its output"
            shown = shown_after.text
        status, printed = run_command(argv, block.where)
        assert status == expected_status(shown), f"{block.where}: `{shlex.join(argv)}` exited {status}\n{printed}"
        if shown:
            assert same_output(shown, printed), f"{block.where}: `{shlex.join(argv)}` printed\n{printed}"


# screenshots of the `layerlab serve` page: a browser's pixels depend on its fonts and version, so
# the page names the command that makes them (it needs headless Chromium) instead of running it
SCREENSHOTS = {"docs/img/serve": "python benchmarks/serve.py --readme docs/img/serve"}


def check_pictures(page: pathlib.Path) -> None:
    """Each picture the page shows was just drawn, in the working directory, with the committed pixels
    (a screenshot of the browser page: the page names the command that makes it)."""
    text = page.read_text(encoding="utf-8")
    for link in IMAGE.findall(text):
        committed = (page.parent / link).resolve()
        drawn = pathlib.Path(committed.relative_to(ROOT))
        command = SCREENSHOTS.get(drawn.parent.as_posix())
        if command is not None:
            assert f"`{command}`" in text, f"{page.name}: {drawn} is a screenshot; the page must name `{command}`"
            assert f'"{drawn.stem}"' in (ROOT / "benchmarks" / "serve.py").read_text(), f"{drawn}: not made by {command}"
            continue
        assert drawn.is_file(), f"{page.name}: no command on the page draws {drawn}"
        assert np.array_equal(imread(drawn), imread(committed)), f"{page.name}: {drawn} differs from the picture shown"


def test_every_layer_kind_has_a_page():
    names = {page.stem for page in (ROOT / "docs" / "layers").glob("*.md")}
    assert {"dense", "conv", "local", "tiled", "transposed", "pooling", "normalisation", "flatten"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_runs_and_prints_what_it_shows(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.setenv("COLUMNS", "100")  # the width of the terminal the pages show
    monkeypatch.delenv("LAYERLAB_MAX_BYTES", raising=False)  # the pages show the default limit
    skipped = run_page(page)
    check_pictures(page)
    name = str(page.relative_to(ROOT))
    assert skipped == NOT_RUN.get(name, []), (
        f"{name}: the blocks marked not-run changed; update NOT_RUN")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_pictures_live_in_docs_img(page):
    """So that ``check_pictures`` (run with each page) finds the command that draws each of them."""
    for link in IMAGE.findall(page.read_text(encoding="utf-8")):
        picture = (page.parent / link).resolve()
        assert picture.is_file() and picture.is_relative_to(ROOT / "docs" / "img"), f"{page.name}: {link}"

