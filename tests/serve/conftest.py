"""The page of ``layerlab serve`` in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium).

One server (``layerlab serve --no-browser --port 0``, a subprocess whose first stdout line gives
the address) and one browser serve every page test of a pytest process. Without the browser the
page tests skip with one reason (:data:`BROWSER_MISSING`), which ``tests/conftest.py`` prints as one
line under the summary; with ``LAYERLAB_BROWSER_TESTS=required`` (set by ``.ci/run``) they fail
instead, so CI never skips them.

The page sets ``document.body.dataset.state`` to ``"ready"`` after each redraw (``"busy"`` while it
waits for the API): :func:`wait_ready` waits for it, so no test sleeps.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import pathlib
import queue
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from layerlab.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
BROWSER_MISSING = ("the browser tests of `layerlab serve` need headless Chromium: "
                   "apt-get install chromium chromium-driver")
REQUIRED = os.environ.get("LAYERLAB_BROWSER_TESTS") == "required"
SCREENSHOTS = pathlib.Path(os.environ.get("LAYERLAB_SCREENSHOTS", ROOT / "runs" / "serve-screenshots"))
STARTUP_TIMEOUT_S = 60


def browser_problem() -> str | None:
    """What is missing for the browser tests, or None."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install -e '.[dev]')")
    return ", ".join(missing) or None


def _skip_or_fail(detail: str) -> None:
    if REQUIRED:
        pytest.fail(f"LAYERLAB_BROWSER_TESTS=required but {detail}", pytrace=False)
    pytest.skip(BROWSER_MISSING)


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of ``process``, waiting at most ``timeout`` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


@pytest.fixture(scope="session")
def server_url():
    """``http://127.0.0.1:PORT/`` of a ``layerlab serve`` subprocess, stopped after the session."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "layerlab", "serve", "--no-browser", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    line = _first_line(process, STARTUP_TIMEOUT_S)
    if not line.startswith("layerlab serve: http://"):
        process.kill()
        pytest.fail(f"layerlab serve printed {line!r} instead of its address; stderr: {process.stderr.read()}")
    yield line.split(": ", 1)[1].strip()
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def driver():
    """One headless Chromium for the session (selenium-manager never runs: the driver path is given)."""
    problem = browser_problem()
    if problem:
        _skip_or_fail(f"missing: {problem}")
    # selenium is optional (the dev extra): imported only once the browser tests run
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--force-device-scale-factor=1", "--disable-extensions",
                     "--no-first-run", "--disable-background-networking"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as err:  # noqa: BLE001 - any start-up failure means: no usable browser here
        _skip_or_fail(f"Chromium did not start: {err}")
    browser.set_script_timeout(30)
    yield browser
    browser.quit()


@pytest.fixture
def page(driver, server_url):
    """A :class:`Page` on the server; after the test, no console error may have been logged."""
    driver.get_log("browser")  # drop what earlier tests left
    page = Page(driver, server_url)
    yield page
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
              and not page.expects_http_error(entry["message"])]
    assert not errors, f"console errors: {errors}"


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
        """Wait until the page has drawn the current state (``body[data-state=ready]``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.driver.execute_script("return document.body && document.body.dataset.state") == "ready":
                return
            time.sleep(0.005)
        raise AssertionError(f"the page never became ready: {self.driver.current_url}")

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

    def active(self, testid: str) -> set[str]:
        """``data-pos`` of the cells with this test id that the current hover lights."""
        return set(self.js(f'return [...document.querySelectorAll(\'[data-testid="{testid}"][data-active="true"]\')]'
                           '.map(c => c.dataset.pos)'))

    def hover(self, testid: str, pos: str) -> None:
        """Move the real mouse onto the cell ``pos`` and wait until the page has lit its links."""
        from selenium.webdriver.common.action_chains import ActionChains  # selenium: optional, see driver()

        cell = self.driver.find_element("css selector", f'[data-testid="{testid}"][data-pos="{pos}"]')
        self.js("arguments[0].scrollIntoView({block: 'center'})", cell)
        ActionChains(self.driver).move_to_element(cell).perform()
        self.wait_ready()

    def screenshot(self, name: str) -> pathlib.Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


def shape_json(input_shape: str, layers: list[str]) -> dict:
    """``layerlab shape INPUT LAYER... --json``, in-process: the numbers the page must show."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["shape", input_shape, *layers, "--json"])
    assert status == 0, out.getvalue()
    return json.loads(out.getvalue())
