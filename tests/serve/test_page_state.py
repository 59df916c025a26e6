"""The state lives in the URL: a URL opens its layer or stack, every change rewrites the URL, and
the rewritten URL reproduces the view. The stack view shows ``layerlab shape``'s table and the
receptive field of a chosen unit."""

from __future__ import annotations

import urllib.parse

import numpy as np
import torch
from browser_page import shape_json
from torch import nn

from layerlab.convert import dense_matrix


def _view(page) -> tuple[str, str, str]:
    return page.text("output-shape"), page.text("params"), page.text("macs")


def _control(page, element_id: str) -> str:
    return page.js(f"return document.getElementById('{element_id}').value")


def test_a_url_opens_its_layer_with_the_form_filled(page):
    page.open("3x32x32", ["Conv2d(8,3,stride=2)"])
    assert _view(page) == ("8×15×15", "224", "48,600")
    assert [_control(page, name) for name in ("kind", "in-channels", "in-h", "in-w", "arg-out", "arg-kernel_size",
                                              "arg-stride")] == ["Conv2d", "3", "32", "32", "8", "3", "2"]


def test_every_change_rewrites_the_url_and_the_url_reproduces_the_view(page):
    page.open("3x32x32", ["Conv2d(8,3,stride=2)"])
    page.set_control("arg-padding", "same")
    page.set_control("arg-stride", "")
    page.set_control("in-w", "20")
    page.set_control("kind", "LocallyConnected2d")
    url = page.driver.current_url
    assert urllib.parse.unquote(url).endswith("/?input=3x32x20&layer=LocallyConnected2d(8,3,padding='same')")
    shown = _view(page)
    expected = shape_json("3x32x20", ["LocallyConnected2d(8,3,padding='same')"])
    assert shown == ("×".join(map(str, expected["output_shape"])), f"{expected['total']['params']:,}",
                     f"{expected['total']['macs']:,}")
    page.driver.get(url)
    page.wait_ready()
    assert _view(page) == shown
    assert _control(page, "arg-padding") == "same"


def test_the_picker_builds_the_transposed_local_and_low_rank_layers(page):
    page.open("2x6x6", ["Conv2d(4,3,stride=2)"])
    page.set_control("kind", "LowRankLocallyConnected2d")
    assert _control(page, "arg-rank") == "2"  # the rank control starts at an example value
    page.set_control("arg-rank", "3")
    assert urllib.parse.unquote(page.driver.current_url).endswith("layer=LowRankLocallyConnected2d(4,3,stride=2,rank=3)")
    expected = shape_json("2x6x6", ["LowRankLocallyConnected2d(4,3,stride=2,rank=3)"])
    assert _view(page) == ("4×2×2", f"{expected['total']['params']:,}", f"{expected['total']['macs']:,}")
    page.set_control("kind", "LocallyConnectedTranspose2d")
    page.set_control("arg-output_padding", "1")
    layer = "LocallyConnectedTranspose2d(4,3,stride=2,output_padding=1)"
    assert urllib.parse.unquote(page.driver.current_url).endswith(f"layer={layer}")
    expected = shape_json("2x6x6", [layer])
    assert _view(page) == ("4×14×14", f"{expected['total']['params']:,}", f"{expected['total']['macs']:,}")
    page.driver.get(page.driver.current_url)  # the URL reproduces the view and fills the form
    page.wait_ready()
    assert (_control(page, "kind"), _control(page, "arg-output_padding")) == ("LocallyConnectedTranspose2d", "1")


def test_repeated_layers_open_the_stack_view_with_layerlab_shapes_table(page):
    layers = ["Conv2d(8, 3, padding=1)", "ReLU()", "MaxPool2d(2)", "Conv2d(16, 3, stride=2)", "Flatten()", "Linear(10)"]
    page.open("3x32x32", layers)
    expected = shape_json("3x32x32", layers)
    rows = page.js("return [...document.querySelectorAll('#stack-table tbody tr')].map(tr => [...tr.cells].map(td => td.textContent))")
    assert rows == [[str(k), layer["text"], "×".join(map(str, layer["output_shape"][1:])), f"{layer['params']:,}",
                     f"{layer['macs']:,}", "global" if layer["receptive_field"]["global"]
                     else "×".join(f"{size:g}" for size in layer["receptive_field"]["size"])]
                    for k, layer in enumerate(expected["layers"], start=1)]
    assert _view(page) == ("10", f"{expected['total']['params']:,}", f"{expected['total']['macs']:,}")
    page.set_control("stack-layers", "\n".join(layers[:3]))
    assert page.driver.current_url.count("layer=") == 3
    assert page.text("output-shape") == "8×16×16"


def _support(stack, input_shape, unit) -> set[tuple[int, int]]:
    """Input positions that reach output unit ``unit`` (channel 0) through the stack: the non-zeros
    of the product of the layers' dense-equivalent matrices with all weights 1."""
    shape, product = input_shape, None
    for layer in stack:
        with torch.no_grad():
            for parameter in layer.parameters():
                parameter.fill_(1.0)
        matrix = dense_matrix(layer.eval(), shape).numpy()
        product = matrix if product is None else matrix @ product
        shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])
    row = np.ravel_multi_index((0, *unit), shape)
    return {tuple(int(v) for v in np.unravel_index(col, input_shape)[1:]) for col in np.flatnonzero(product[row])}


def test_the_receptive_field_of_a_chosen_unit_is_drawn_on_the_input(page):
    layers = ["Conv2d(2, 3)", "MaxPool2d(2)", "Conv2d(2, 3, stride=2)"]
    torch_stack = [nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 2, stride=2, groups=2), nn.Conv2d(2, 2, 3, stride=2)]
    page.open("1x20x20", layers)
    for unit in ((0, 0), (1, 2), (2, 1)):
        page.click_cell("rf-out-cell", ",".join(map(str, unit)))
        lit = {tuple(int(v) for v in pos.split(",")) for pos in
               page.js("return [...document.querySelectorAll('[data-testid=\"rf-in-cell\"].rf')].map(c => c.dataset.pos)")}
        assert lit == _support(torch_stack, (1, 20, 20), unit), unit
    # another layer: the first conv's 3×3 field; the URL keeps the choice
    page.click_row(1)
    page.click_cell("rf-out-cell", "4,5")
    window = [f"{i},{j}" for i in (4, 5, 6) for j in (5, 6, 7)]
    lit = "return [...document.querySelectorAll('[data-testid=\"rf-in-cell\"].rf')].map(c => c.dataset.pos)"
    assert sorted(page.js(lit)) == window
    assert urllib.parse.unquote(page.driver.current_url).endswith("&index=1&out=4,5")
    page.driver.get(page.driver.current_url)
    page.wait_ready()
    assert sorted(page.js(lit)) == window


def test_fractional_receptive_fields_show_six_significant_digits(page):
    layers = ["Conv2d(2,3)", "Upsample(scale_factor=3)", "Conv2d(2,3)"]
    page.open("1x8x8", layers)
    expected = shape_json("1x8x8", layers)["layers"][2]["receptive_field"]["size"]
    assert expected[0] != round(expected[0])  # 3 + 2/3: a fraction
    rows = page.js("return [...document.querySelectorAll('#stack-table tbody tr')].map(tr => tr.cells[5].textContent)")
    assert rows[2] == "×".join(f"{size:g}" for size in expected)


def _numbers(input_shape: str, layer: str) -> tuple[str, str, str]:
    expected = shape_json(input_shape, [layer])
    return ("×".join(map(str, expected["output_shape"])), f"{expected['total']['params']:,}",
            f"{expected['total']['macs']:,}")


def test_the_groups_slider_runs_from_a_full_conv_to_depthwise(page):
    page.open("4x8x8", ["Conv2d(8, 3)"])
    assert page.js("const s = document.getElementById('groups-slider'); return [s.min, s.max, s.value]") == ["1", "4", "1"]
    page.set_control("groups-slider", "2")
    assert urllib.parse.unquote(page.driver.current_url).endswith("layer=Conv2d(8,3,groups=2)")
    assert _view(page) == _numbers("4x8x8", "Conv2d(8,3,groups=2)")
    page.driver.find_element("id", "depthwise").click()  # 8 out channels: a multiple of 4, kept
    page.wait_ready()
    assert (_control(page, "arg-groups"), _control(page, "arg-out"), _control(page, "groups-slider")) == ("4", "8", "4")
    assert _view(page) == _numbers("4x8x8", "Conv2d(8,3,groups=4)")
    page.set_control("in-channels", "3")  # depthwise again: 8 is no multiple of 3, so one output per channel
    assert page.js("return document.getElementById('groups-slider').max") == "3"
    page.driver.find_element("id", "depthwise").click()
    page.wait_ready()
    assert urllib.parse.unquote(page.driver.current_url).endswith("input=3x8x8&layer=Conv2d(3,3,groups=3)")
    assert _view(page) == _numbers("3x8x8", "Conv2d(3,3,groups=3)")
