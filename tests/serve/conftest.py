"""The page of ``layerlab serve`` in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium).

One server (``layerlab serve --no-browser --port 0``, a subprocess whose first stdout line gives
the address) and one browser serve every page test of a pytest process. Without the browser the
page tests skip with one reason (:data:`BROWSER_MISSING`), which the summary prints as one line with
their count (:func:`pytest_runtest_makereport`); with ``LAYERLAB_BROWSER_TESTS=required`` (set by
``.ci/run``) they fail instead, so CI never skips them.

The page sets ``document.body.dataset.state`` to ``"ready"`` after each redraw (``"busy"`` while it
waits for the API): ``Page.wait_ready`` (``browser_page.py``) waits for it, so no test sleeps.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import queue
import shutil
import subprocess
import sys
import threading

import pytest

from browser_page import Page, stop

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Debian's chromium + chromium-driver; elsewhere name them with LAYERLAB_CHROMIUM / LAYERLAB_CHROMEDRIVER
CHROMIUM = os.environ.get("LAYERLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("LAYERLAB_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
BROWSER_MISSING = ("tests/serve/test_page_*.py (the browser tests of `layerlab serve`) need headless Chromium: "
                   "apt-get install chromium chromium-driver")
REQUIRED = os.environ.get("LAYERLAB_BROWSER_TESTS") == "required"
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Every browser test skipped for want of the browser reports the same place (the function
    that skips), so the summary (``-ra``) says it in one line with their count."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and report.longrepr[2].endswith(BROWSER_MISSING):
        report.longrepr = (str(pathlib.Path(__file__).relative_to(ROOT)), _skip_or_fail.__code__.co_firstlineno - 1,
                           report.longrepr[2])
    return report


def _lines(process: subprocess.Popen) -> queue.Queue:
    """The stdout lines of ``process``, read by a thread to the end (so the pipe never fills)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.fixture(scope="session")
def server_url(tmp_path_factory):
    """``http://127.0.0.1:PORT/`` of a ``layerlab serve`` subprocess, stopped after the session."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "layerlab", "serve", "--no-browser", "--port", "0"],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=ROOT)
    try:
        line = _lines(process).get(timeout=STARTUP_TIMEOUT_S)
    except queue.Empty:
        line = ""
    if not line.startswith("layerlab serve: http://"):
        process.kill()
        process.wait()
        pytest.fail(f"layerlab serve printed {line!r} instead of its address; stderr: {log.read_text()}")
    yield line.split(": ", 1)[1].strip()
    stop(process)


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
