"""The page of ``layerlab serve`` as the browser tests see it: its URL, its test hooks (the page
contract: ``data-testid`` names, ``data-pos`` cells, ``data-active``, ``body[data-state=ready]``), and
the numbers ``layerlab shape --json`` gives for the same stack."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import subprocess
import urllib.parse

from layerlab.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCREENSHOTS = pathlib.Path(os.environ.get("LAYERLAB_SCREENSHOTS", ROOT / "runs" / "serve-screenshots"))


def page_url(base: str, input_shape: str, layers: list[str] | tuple[str, ...] = (), **extra: str) -> str:
    """The page's URL for an input and layer strings: ``/?input=3x32x32&layer=Conv2d(8,3)``."""
    query = [("input", input_shape), *(("layer", layer) for layer in layers), *extra.items()]
    return base.rstrip("/") + "/?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


class Page:
    """The page in the browser, with the test hooks of the page contract."""

    def __init__(self, driver, base: str):
        self.driver = driver
        self.base = base
        self.http_errors: list[str] = []

    def expects_http_error(self, message: str) -> bool:
        """True for the browser's own log line of an API answer the test asked for (an invalid
        configuration is answered with status 400, which Chromium logs as a failed resource)."""
        return "/api/" in message and any(code in message for code in (" 400 ", " 422 "))

    def open(self, input_shape: str, layers=(), **extra: str) -> None:
        self.driver.get(page_url(self.base, input_shape, list(layers), **extra))
        self.wait_ready()

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until the page has drawn the current state (``body[data-state=ready]``), in one
        round trip: the browser itself polls."""
        self.driver.set_script_timeout(timeout)
        ready = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const check = () => document.body && document.body.dataset.state === 'ready' ? done(true) : setTimeout(check, 2);"
            "check();")
        assert ready, f"the page never became ready: {self.driver.current_url}"

    def testid(self, name: str):
        return self.driver.find_elements("css selector", f'[data-testid="{name}"]')

    def text(self, name: str) -> str:
        found = self.testid(name)
        assert len(found) == 1, f"{len(found)} elements with data-testid={name!r}"
        return found[0].text

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def cells(self, testid: str) -> list[str]:
        """``data-pos`` of every grid cell with this test id."""
        return self.js(f'return [...document.querySelectorAll(\'[data-testid="{testid}"]\')].map(c => c.dataset.pos)')

    def cells_in_reading_order(self, testid: str) -> list[str]:
        """``data-pos`` of every grid cell with this test id in the order a reader meets them on the
        screen: rows top to bottom, each row left to right."""
        return self.js(f'return [...document.querySelectorAll(\'[data-testid="{testid}"]\')]'
                       '.map(c => [c.getBoundingClientRect(), c.dataset.pos])'
                       '.sort(([a], [b]) => a.top - b.top || a.left - b.left).map(([, pos]) => pos)')

    def active(self, testid: str) -> set[str]:
        """``data-pos`` of the cells with this test id that the current hover lights."""
        return set(self.js(f'return [...document.querySelectorAll(\'[data-testid="{testid}"][data-active="true"]\')]'
                           '.map(c => c.dataset.pos)'))

    def hover(self, testid: str, pos: str) -> None:
        """Move the real mouse onto the cell ``pos`` and wait until the page has lit its links.

        A cell out of view is scrolled to while the mouse rests on the (sticky) form, so that no
        grid cell slides under the mouse on the way."""
        from selenium.webdriver.common.action_chains import ActionChains  # selenium: optional, see driver()

        cell = self.driver.find_element("css selector", f'[data-testid="{testid}"][data-pos="{pos}"]')
        if not self.js("const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight", cell):
            ActionChains(self.driver, duration=0).move_to_element(self.driver.find_element("id", "kind")).perform()
            self.js("arguments[0].scrollIntoView({block: 'center'})", cell)
        ActionChains(self.driver, duration=0).move_to_element(cell).perform()
        self.wait_ready()

    def click_cell(self, testid: str, pos: str) -> None:
        """Click the cell ``pos`` (the stack view's output grid chooses a unit)."""
        self.driver.find_element("css selector", f'[data-testid="{testid}"][data-pos="{pos}"]').click()
        self.wait_ready()

    def click_row(self, index: int) -> None:
        """Click row ``index`` (1-based) of the stack table (chooses that layer)."""
        self.driver.find_element("css selector", f'#stack-table tr[data-row="{index}"] td').click()
        self.wait_ready()

    def hover_away(self) -> None:
        """Move the mouse off the grids (onto the page title)."""
        from selenium.webdriver.common.action_chains import ActionChains  # selenium: optional, see driver()

        ActionChains(self.driver, duration=0).move_to_element(self.driver.find_element("css selector", "h1")).perform()
        self.wait_ready()

    def set_control(self, element_id: str, value: str) -> None:
        """Give a form control a new value, as typing or picking it does (one ``input`` event)."""
        self.js("const c = document.getElementById(arguments[0]); c.value = arguments[1];"
                "c.dispatchEvent(new Event('input', {bubbles: true}));", element_id, value)
        self.wait_ready()

    def screenshot(self, name: str) -> pathlib.Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a ``layerlab serve`` subprocess: SIGTERM, then SIGKILL if it has not exited in ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def shape_json(input_shape: str, layers: list[str]) -> dict:
    """``layerlab shape INPUT LAYER... --json``, in-process: the numbers the page must show."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["shape", input_shape, *layers, "--json"])
    assert status == 0, out.getvalue()
    return json.loads(out.getvalue())
