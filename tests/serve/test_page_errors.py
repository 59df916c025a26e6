"""An invalid configuration shows the engine's own message in place of the view, never a blank or
stale one; a valid one has no ``error`` element at all."""

from __future__ import annotations

import contextlib
import io

import pytest

from layerlab.cli.main import main

INVALID = {
    "kernel-too-large": ("1x5x5", "Conv2d(2, 7)"),
    "groups": ("3x8x8", "Conv2d(4, 3, groups=2)"),
    "unknown-layer": ("1x8x8", "Conv9d(2, 3)"),
    "syntax": ("1x8x8", "Conv2d(2,"),
    "output-padding": ("1x4x4", "ConvTranspose2d(1, 3, stride=2, output_padding=2)"),
    "pool-padding": ("1x8x8", "MaxPool2d(2, padding=2)"),
    "same-with-stride": ("1x8x8", "Conv2d(1, 3, stride=2, padding='same')"),
    "tile": ("1x8x8", "TiledConv2d(1, 3, tile_size=0)"),
    "input-shape": ("0x8x8", "Conv2d(1, 3)"),
    "dense-features": ("abc", "Dense(4)"),
}


def engine_message(input_shape: str, layer: str) -> str:
    """What ``layerlab shape INPUT LAYER`` prints after ``error:`` (exit status 2)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["shape", input_shape, layer])
    assert status == 2, err.getvalue()
    return err.getvalue().split("error: ", 1)[1].strip()


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_configuration_shows_the_engines_message(page, case):
    input_shape, layer = INVALID[case]
    page.open(input_shape, [layer])
    assert page.text("error") == engine_message(input_shape, layer)
    assert not page.testid("output-shape")[0].is_displayed(), "the view of another configuration stays hidden"


def test_a_control_that_makes_the_layer_invalid_replaces_the_view_and_back(page):
    page.open("1x8x8", ["Conv2d(2, 3)"])
    assert not page.testid("error")
    page.set_control("arg-kernel_size", "9")
    assert page.text("error") == engine_message("1x8x8", "Conv2d(2, 9)")
    assert not page.testid("out-cell")[0].is_displayed()
    page.set_control("arg-kernel_size", "5")
    assert not page.testid("error")
    assert page.text("output-shape") == "2×4×4"


@pytest.mark.parametrize("case, fields", [
    ("kernel-too-large", {"kind": "Conv2d", "in-h": "5", "arg-out": "2", "arg-kernel_size": "7", "arg-stride": ""}),
    ("output-padding", {"kind": "ConvTranspose2d", "arg-out": "1", "arg-kernel_size": "3", "arg-stride": "2",
                        "arg-output_padding": "2"}),
    ("pool-padding", {"kind": "MaxPool2d", "arg-kernel_size": "2", "arg-padding": "2"}),
    ("same-with-stride", {"kind": "Conv2d", "arg-out": "1", "arg-stride": "2", "arg-padding": "same"}),
])
def test_a_refused_url_fills_the_form_with_its_arguments_as_typed(page, case, fields):
    page.open(*INVALID[case][:1], [INVALID[case][1]])
    assert page.testid("error")
    assert {name: page.js("return document.getElementById(arguments[0]).value", name) for name in fields} == fields


def test_fixing_the_one_wrong_field_of_a_refused_url_shows_the_layer(page):
    page.open("1x5x5", ["Conv2d(2, 7, stride=1)"])
    page.set_control("arg-kernel_size", "3")
    assert not page.testid("error")
    assert page.text("output-shape") == "2×3×3"


def test_a_stack_that_does_not_fit_shows_the_message_naming_the_layer(page):
    layers = ["Conv2d(4, 3)", "MaxPool2d(2)", "Conv2d(8, 5)"]
    page.open("1x8x8", layers)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["shape", "1x8x8", *layers]) == 2
    assert page.text("error") == err.getvalue().split("error: ", 1)[1].strip()
    assert page.text("error").startswith("layer 3:")


def test_the_bare_page_on_a_server_without_a_model_logs_no_error(page):
    page.driver.get(page.base)  # asks /api/model, which answers "no model" (the fixture checks the console)
    page.wait_ready()
    assert page.text("output-shape") == "1×6×6" and not page.testid("error")
    page.driver.get(page.base.rstrip("/") + "/?model=1")  # the model asked for: the API's reason in place
    page.wait_ready()
    assert page.text("error") == "no model: start the server with layerlab serve --model FILE.py:NAME --input SHAPE"
