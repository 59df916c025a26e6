"""The ``--help`` descriptions of the subcommands: their module docstrings, reST markup removed.

A docstring is written for the code's readers (reST: ``:mod:`x```, double back-quotes, ``Examples::``,
``*emphasis*``); a terminal shows what the markup means: ``x``, the literal text, ``Examples:``,
the emphasised words. Layout (paragraphs, indented examples) is kept, so the parsers use
``argparse.RawDescriptionHelpFormatter`` (:func:`add_command`).
"""

from __future__ import annotations

import argparse
import re

# :role:`text` and :role:`text <target>` (a leading ~ shortens a dotted name to its last part)
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`<]+?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``", re.S)
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*", re.S)
_EMPHASIS = re.compile(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])")
_DOUBLE_COLON = re.compile(r"(\S)::$", re.M)


def plain_text(text: str) -> str:
    """``text`` with its reST inline markup replaced by what it shows, and ``Examples::`` → ``Examples:``."""
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    text = _LITERAL.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    return _DOUBLE_COLON.sub(r"\1:", text)


def description(module_doc: str) -> str:
    """The ``--help`` description of a subcommand: its module docstring after the first paragraph (the first
    paragraph is the one-line summary that ``layerlab --help`` lists), as plain text."""
    return plain_text(module_doc.split("\n\n", 1)[1])


def add_command(subparsers: argparse._SubParsersAction, name: str, help_text: str,
                module_doc: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``: ``help_text`` in ``layerlab --help``, the module docstring
    ``module_doc`` (:func:`description`) in ``layerlab NAME --help``, its layout kept."""
    return subparsers.add_parser(name, help=help_text, description=description(module_doc),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
