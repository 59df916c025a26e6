"""Every ``--help`` of every subcommand reads as plain text: no reST markup from the docstrings."""

from __future__ import annotations

import argparse
import re

import pytest

from layerlab.cli.helptext import plain_text
from layerlab.cli.main import COMMANDS, build_parser

# what reST looks like in a terminal: ``literal``, :role:`target`, `default role`, **strong**, *emphasis*, Examples::
MARKUP = re.compile(r"``|:[a-z]+:`|`[^`\n]+`|\*\*\S|(?<![\w*])\*\S[^*\n]*\*(?![\w*])|\S::$", re.M)


def parsers(parser: argparse.ArgumentParser, name: str = "layerlab"):
    """``(name, parser)`` of ``parser`` and of every subcommand below it, hidden old names included."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


HELPS = [(name, parser.format_help()) for name, parser in parsers(build_parser())]


def test_every_command_and_subcommand_has_a_help():
    names = {name for name, _ in HELPS}
    assert {f"layerlab {c}" for c in COMMANDS} <= names
    assert {"layerlab explain conv2d", "layerlab explain family", "layerlab explain rf"} <= names


@pytest.mark.parametrize("name, text", HELPS, ids=[name for name, _ in HELPS])
def test_help_is_plain_text(name, text):
    found = [line for line in text.splitlines() if MARKUP.search(line)]
    assert not found, f"`{name} --help` shows reST markup: {found}"


@pytest.mark.parametrize("rest, plain", [
    ("Pure arithmetic (:mod:`layerlab.arith`).", "Pure arithmetic (layerlab.arith)."),
    ("a :class:`~layerlab.errors.LayerlabError` becomes", "a LayerlabError becomes"),
    (":func:`load <layerlab.cli.loading.load_model>` it", "load it"),
    ("``Linear(10)`` and ``--out``", "Linear(10) and --out"),
    ("Examples::\n\n    layerlab shape 784", "Examples:\n\n    layerlab shape 784"),
    ("**This runs your own code**, whose *input* size", "This runs your own code, whose input size"),
    ("3 * 4 and 2*x*y stay", "3 * 4 and 2*x*y stay"),
])
def test_plain_text_replaces_markup_by_what_it_shows(rest, plain):
    assert plain_text(rest) == plain
    assert not MARKUP.search(plain)
