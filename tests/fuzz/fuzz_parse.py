"""Coverage-guided fuzzing of layerlab's string parsers with atheris (optional: ``pip install atheris``).

Every input must either parse or raise :class:`layerlab.errors.LayerlabError`; anything else (and a
parsed layer whose ``analyse`` raises something else) is a crash that atheris reports with the input.

Run it for as long as you like (Ctrl-C to stop)::

    python tests/fuzz/fuzz_parse.py -dict=tests/fuzz/layers.dict
    python tests/fuzz/fuzz_parse.py -runs=20000 -dict=tests/fuzz/layers.dict   # a bounded run

``tests/fuzz/test_atheris.py`` runs a short bounded run in the test suite when atheris is installed.
"""

import sys

import atheris

with atheris.instrument_imports():
    from layerlab.arith import parse_shape
    from layerlab.arith.parse import parse_layer, parse_stack
    from layerlab.errors import LayerlabError

SHAPES = ((3, 32, 32), (1, 28), (64,), (2, 5, 6, 7))


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, 3)
    text = fdp.ConsumeUnicodeNoSurrogates(1200)
    try:
        if choice == 0:
            parse_shape(text)
        elif choice == 1:
            parse_stack(text.split("|"))
        else:
            spec = parse_layer(text)
            spec.analyse(SHAPES[(choice + len(text)) % len(SHAPES)])
    except LayerlabError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
