"""The page shows exactly what the API returned, and nothing it computed itself.

First, every field of a real ``/api/view`` answer is on the page as the API wrote it. Then the
API's answers are replaced, in the browser, by made-up ones that no layer could produce (a script
run before the page's own wraps ``fetch``): the page shows the made-up shape, counts, formulas,
code, grids, lit cells and matrix, so none of them can come from the page itself."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

INPUT, LAYER = "2x9x9", "Conv2d(4, 3, stride=2, padding=1)"


def api(base: str, endpoint: str, **params: str) -> dict:
    query = urllib.parse.urlencode(list(params.items()))
    with urllib.request.urlopen(f"{base.rstrip('/')}/api/{endpoint}?{query}", timeout=30) as answer:
        return json.load(answer)


def _lines(page, element_id: str) -> list[str]:
    return page.js(f"return [...document.querySelectorAll('#{element_id} li')].map(li => li.textContent)")


def _family(page) -> list[list[str]]:
    return page.js("return [...document.querySelectorAll('#compare tbody tr')].map(tr => [...tr.cells].slice(1).map(td => td.textContent))")


def test_every_field_of_the_view_is_shown_as_the_api_wrote_it(page, server_url):
    layer = api(server_url, "view", input=INPUT, layer=LAYER)["layer"]
    page.open(INPUT, [LAYER])
    assert page.text("output-shape") == layer["output_shape_text"]
    assert page.text("params") == f"{layer['params']:,}"
    assert page.text("macs") == f"{layer['macs']:,}"
    assert _lines(page, "formulas") == layer["formulas"]
    assert _lines(page, "warnings") == layer["warnings"]
    assert page.js("return document.getElementById('code-torch').textContent") == layer["code"]["torch"]
    assert page.js("return document.getElementById('code-layerlab').textContent") == layer["code"]["layerlab"]
    family = [layer["family"][key] for key in ("conv", "tiled", "local", "dense")]
    assert _family(page) == [[m["layer"] or m["reason"], "—" if m["params"] is None else f"{m['params']:,}",
                              "—" if m["macs"] is None else f"{m['macs']:,}"] for m in family]
    grid = layer["grid"]["output"]
    assert len(page.cells("out-cell")) == grid["cells_shown"]


def test_hover_lights_the_cells_the_api_names(page, server_url):
    page.open(INPUT, [LAYER])
    for side, other in (("out", "in"), ("in", "out")):
        pos = "1,2,3"
        links = api(server_url, "links", input=INPUT, layer=LAYER, **{side: pos})
        page.hover(f"{side}-cell", pos)
        assert page.active(f"{other}-cell") == set(links[other])
        assert page.js("return document.querySelectorAll('#w-grid [data-weight]').length") == \
            len({link["weight"] for link in links["links"]})


FAKE = r"""
(() => {
  const fake = %s;
  const real = window.fetch.bind(window);
  window.fetch = async (url, options) => {
    const path = new URL(url, location.href).pathname;
    if (path in fake) return new Response(JSON.stringify(fake[path]), {status: 200, headers: {"Content-Type": "application/json"}});
    return real(url, options);
  };
})();
"""


def test_the_page_draws_made_up_answers_as_given(page, server_url):
    view = api(server_url, "view", input=INPUT, layer=LAYER)
    layer = view["layer"]
    layer.update(output_shape_text="7×7×7", params=123456789, macs=42, formulas=["H: made up = 7"],
                 warnings=["a warning only the API knows"], code={"torch": "torch code", "layerlab": "layerlab code"})
    layer["family"]["local"] = {"layer": None, "params": None, "macs": None, "reason": "made-up reason"}
    layer["grid"]["output"] = {"shape": [1, 2, 3], "positions": "c,i,j", "channels_shown": 1, "cells_shown": 6,
                               "drawn": True}
    links = {"schema": view["schema"], "out": "0,1,2", "in": ["0,8,8", "1,0,4"], "weights": 5,
             "links": [{"in": "0,8,8", "tap": [0, 0], "weight": 3}, {"in": "1,0,4", "tap": [2, 2], "weight": 3}]}
    matrix = {"schema": view["schema"], "mode": "exact", "rows": 2, "cols": 3, "ids": [[0, -1, 1], [-1, 2, -1]],
              "zero": -1, "sums": [], "weights": 3, "connections": 3, "input_shape": [3], "output_shape": [2],
              "bins": None}
    script = FAKE % json.dumps({"/api/view": view, "/api/links": links, "/api/matrix": matrix})
    added = page.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
    try:
        page.open(INPUT, [LAYER])
        assert page.text("output-shape") == "7×7×7"
        assert page.text("params") == "123,456,789"
        assert page.text("macs") == "42"
        assert _lines(page, "formulas") == ["H: made up = 7"]
        assert _lines(page, "warnings") == ["a warning only the API knows"]
        assert page.js("return document.getElementById('code-torch').textContent") == "torch code"
        assert _family(page)[2] == ["made-up reason", "—", "—"]
        assert sorted(page.cells("out-cell")) == [f"0,{i},{j}" for i in range(2) for j in range(3)]
        page.hover("out-cell", "0,1,2")
        assert page.active("in-cell") == {"0,8,8", "1,0,4"}
        assert page.js("return [...document.querySelectorAll('#w-grid [data-weight]')].map(c => c.dataset.weight)") == ["3"]
        assert page.js("const c = document.querySelector('[data-testid=\"matrix\"]'); return [c.width, c.height]") == [3, 2]
        # entry (0, 1) is a structural zero: blank; entry (1, 1) has weight 2: drawn
        pixels = page.js("const c = document.querySelector('[data-testid=\"matrix\"]');"
                         "return [...c.getContext('2d').getImageData(0, 0, 3, 2).data].filter((_, k) => k %% 4 === 3)"
                         .replace("%%", "%"))
        assert pixels == [255, 0, 255, 0, 255, 0]
    finally:
        page.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})


def _reading_order(grid: dict) -> list[str]:
    """The cells a grid answer says the page draws, in the order a reader meets them: features in
    order, a (C, L) map one channel a row, a (C, H, W) map its channels side by side (row i of every
    channel, left to right, then row i + 1)."""
    shape = grid["shape"]
    if grid["canvas"]:  # painted on a canvas: no cells
        return []
    if len(shape) == 1:
        return [str(i) for i in range(grid["cells_shown"])]
    channels = range(grid["channels_shown"])
    if len(shape) == 2:
        return [f"{c},{i}" for c in channels for i in range(shape[1])]
    return [f"{c},{i},{j}" for i in range(shape[1]) for c in channels for j in range(shape[2])]


@pytest.mark.parametrize("changes", [
    [("arg-kernel_size", "2"), ("in-w", "9"), ("arg-out", "5"), ("arg-stride", "2"), ("in-channels", "1"),
     ("in-h", "64"), ("in-w", "64"), ("in-h", "7")],
    [("kind", "Conv1d"), ("in-h", "30"), ("kind", "Dense"), ("in-features", "40"), ("kind", "MaxPool2d"),
     ("in-w", "12")],
    # grown and shrunk maps (cells kept, made and removed in place) and channels reshuffled (cells renamed)
    [("kind", "ConvTranspose2d"), ("arg-stride", "3"), ("arg-output_padding", "1"), ("arg-kernel_size", "4"),
     ("in-h", "20"), ("in-w", "30"), ("arg-output_padding", ""), ("arg-stride", "1"), ("in-channels", "1"),
     ("kind", "Conv2d"), ("in-h", "5")],
])
def test_the_grids_follow_every_change_as_the_api_says(page, server_url, changes):
    page.open("3x6x6", ["Conv2d(4,3)"])
    for control, value in changes:
        page.set_control(control, value)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.driver.current_url).query)
        grid = api(server_url, "view", input=query["input"][0], layer=query["layer"][0])["layer"]["grid"]
        for side in ("in", "out"):
            map_grid = grid["input" if side == "in" else "output"]
            assert page.cells_in_reading_order(f"{side}-cell") == _reading_order(map_grid), (control, value)
            # a canvas map: shown, one equal square step per position along both dims
            size = page.js("const c = document.querySelector(`[data-testid=\"${arguments[0]}\"]`);"
                           "return c && c.offsetParent ? [c.width, c.height] : null", f"{side}-map")
            if map_grid["canvas"]:
                rows, cols = map_grid["shape"][1:]
                assert size and (size[0] - 1) / cols == (size[1] - 1) / rows == int((size[0] - 1) / cols), size
            else:
                assert size is None, (side, control, value)


def test_an_aggregated_matrix_is_drawn_in_the_bins_the_api_lists(page, server_url):
    page.open("1x40x40", ["Conv2d(1, 3, stride=2)"])
    bins = api(server_url, "matrix", input="1x40x40", layer="Conv2d(1, 3, stride=2)")["bins"]
    shape = [len(bins["row_edges"]) - 1, len(bins["col_edges"]) - 1]
    drawn = page.js("const c = document.querySelector('[data-testid=\"matrix\"]'); const d = c.getContext('2d')"
                    ".getImageData(0, 0, c.width, c.height).data; const on = [];"
                    "for (let k = 0; k < c.width * c.height; k++) if (d[4 * k + 3]) on.push([Math.floor(k / c.width), k % c.width]);"
                    "return [[c.height, c.width], on]")
    assert drawn == [shape, [list(rc) for rc in zip(bins["rows"], bins["cols"])]]
