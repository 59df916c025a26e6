"""Speed of the ``layerlab serve`` page in a real headless Chromium: first load, redraw per control
change (p50/p95), asset bytes; optionally screenshots of each view.

    python benchmarks/serve.py                       # the table
    python benchmarks/serve.py --rounds 5            # more changes per scenario
    python benchmarks/serve.py --screenshots DIR     # also a PNG of each view in DIR
    python benchmarks/serve.py --readme docs/img/serve   # only the two README pictures
    python benchmarks/serve.py --against HEAD~5      # also the page of a git revision, side by side

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium`` (the dev extra). The server is
``layerlab serve --no-browser --port 0`` (a subprocess); the page is driven as a user would: a
control gets a new value and one ``input`` event. A redraw is timed inside the browser, from that
event until the page says ``ready`` (``body[data-state]``: the API answered and everything is drawn)
and the frame that paints it is done (a mutation observer sees ``ready`` at once; two animation
frames later that frame has been painted).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import pathlib
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATIC = ROOT / "layerlab" / "serve" / "static"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WINDOW = (1400, 1000)

# (name, URL query, [(control id, value), ...]): each change is timed; the list is cycled `rounds` times
SCENARIOS = [
    ("conv 3×64×64, kernel/stride/padding/dilation", "input=3x64x64&layer=Conv2d(8,3)",
     [("arg-kernel_size", "5"), ("arg-stride", "2"), ("arg-padding", "1"), ("arg-dilation", "2"), ("arg-padding", "same"),
      ("arg-stride", ""), ("arg-padding", ""), ("arg-dilation", ""), ("arg-kernel_size", "3"), ("arg-out", "16"),
      ("arg-groups", "1"), ("arg-out", "8")]),
    ("conv 1×64×64, 4,096 × 4,096 matrix (aggregated)", "input=1x64x64&layer=Conv2d(1,3,padding=1)",
     [("arg-kernel_size", "5"), ("arg-padding", "2"), ("arg-kernel_size", "3"), ("arg-padding", "1"),
      ("arg-out", "2"), ("arg-out", "1")]),
    ("kind switch at 4×64×64", "input=4x64x64&layer=Conv2d(4,3)",
     [("kind", "LocallyConnected2d"), ("kind", "TiledConv2d"), ("arg-tile_size", "2"), ("kind", "ConvTranspose2d"),
      ("kind", "MaxPool2d"), ("kind", "AvgPool2d"), ("kind", "Conv2d")]),
    ("input size 16…64", "input=3x16x16&layer=Conv2d(8,3)",
     [("in-h", "32"), ("in-w", "32"), ("in-h", "64"), ("in-w", "64"), ("in-h", "16"), ("in-w", "16")]),
    ("transposed 2×32×32 (coverage map)", "input=2x32x32&layer=ConvTranspose2d(2,3,stride=2)",
     [("arg-output_padding", "1"), ("arg-stride", "3"), ("arg-kernel_size", "4"), ("arg-output_padding", ""),
      ("arg-stride", "2"), ("arg-kernel_size", "3")]),
    ("dense 784 → 64", "input=784&layer=Dense(64)", [("arg-out", "128"), ("in-features", "256"), ("arg-out", "64"),
                                                     ("in-features", "784")]),
]

SCREENSHOTS = [  # (file name, URL query, cell to hover or None)
    ("layer-conv", "input=2x12x12&layer=Conv2d(4,3,stride=2,padding=1)", ("out-cell", "1,3,2")),
    ("layer-local", "input=1x10x10&layer=LocallyConnected2d(2,3,padding=1)", ("in-cell", "0,4,4")),
    ("layer-transposed", "input=1x6x6&layer=ConvTranspose2d(1,3,stride=2,padding=1,output_padding=1)",
     ("out-cell", "0,5,5")),
    ("matrix-aggregated", "input=1x64x64&layer=Conv2d(1,3,padding=1)", None),
    ("stack", "input=3x32x32&layer=Conv2d(8,3,padding=1)&layer=ReLU()&layer=MaxPool2d(2)&layer=Conv2d(16,3,stride=2)"
              "&layer=ReLU()&layer=Conv2d(16,3)&layer=Flatten()&layer=Linear(10)", None),
    ("error", "input=1x5x5&layer=Conv2d(2,7)", None),
]
README = [  # (file name, URL query, cell to hover, page region: the box around the elements these CSS selectors pick)
    ("layer", "input=2x10x10&layer=Conv2d(3,3,stride=2,padding=1)", ("out-cell", "1,2,3"), ["main"]),
    ("transposed", "input=1x5x5&layer=ConvTranspose2d(1,3,stride=2,output_padding=1)", ("out-cell", "0,4,6"),
     ["#layer-result h2", "#coverage-panel"]),
]

TIME_CHANGE = """
const [id, value, done] = arguments;
const control = document.getElementById(id);
performance.clearResourceTimings();
const finish = () => {
  const total = performance.now() - start;
  // the API's share: from the change to the last API answer's end
  const answers = performance.getEntriesByType("resource").filter(e => e.name.includes("/api/"));
  done([total, Math.max(0, ...answers.map(e => e.responseEnd - start))]);
};
// the moment the page says "ready" (a microtask of the task that drew the view), ask for the frame
// that paints it: its animation-frame callback runs before it is painted, the next one after
const ready = new MutationObserver(() => {
  if (document.body.dataset.state !== "ready") return;
  ready.disconnect();
  requestAnimationFrame(() => requestAnimationFrame(finish));
});
ready.observe(document.body, {attributes: true, attributeFilter: ["data-state"]});
const start = performance.now();
control.value = value;
control.dispatchEvent(new Event("input", {bubbles: true}));
"""
WAIT_READY = """
const done = arguments[arguments.length - 1];
const check = () => document.body.dataset.state === "ready"
  ? requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now()))) : setTimeout(check, 0);
check();
"""


def start_server(root: pathlib.Path = ROOT) -> tuple[subprocess.Popen, str]:
    """``layerlab serve`` of the ``layerlab`` package under ``root``: the process and its address."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "layerlab", "serve", "--no-browser", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=root)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    line = lines.get(timeout=60)
    if not line.startswith("layerlab serve: http://"):
        process.kill()
        raise SystemExit(f"layerlab serve printed {line!r}")
    return process, line.split(": ", 1)[1].strip()


def start_browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}", "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    return driver


def open_page(driver, base: str, query: str) -> float:
    """Load ``base?query``; the time from navigation start to the first painted ready frame, in ms."""
    driver.get(f"{base}?{query}")
    return driver.execute_async_script(WAIT_READY)


def cpu_ms(root: int) -> float:
    """CPU time (user + system) of process ``root`` and all its descendants so far, in ms (Linux /proc)."""
    parents, times = {}, {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0)
        stack += [child for child, parent in parents.items() if parent == pid]
    return 1000 * total / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(driver, base: str, rounds: int, server_pid: int) -> None:
    browser_pid = driver.service.process.pid  # chromedriver: Chromium's processes are its descendants
    first = open_page(driver, base, SCENARIOS[0][1])  # a fresh browser: nothing cached
    loads = [open_page(driver, base, SCENARIOS[0][1]) for _ in range(5)]
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
        ".filter(e => !e.name.includes('/api/')).map(e => [e.name, e.encodedBodySize])")
    assets = sum(path.stat().st_size for path in STATIC.iterdir() if path.is_file())
    print(f"first load of the page (3×64×64 conv, fresh browser): {first:.0f} ms; reloads: median "
          f"{statistics.median(loads):.0f} ms, max {max(loads):.0f} ms")
    print(f"assets: {assets:,} bytes in {STATIC.relative_to(ROOT)} ({len(resources)} requests on load: "
          + ", ".join(f"{urllib.parse.urlsplit(name).path} {size:,} B" for name, size in resources) + ")")
    print()
    print("redraw = from a control's input event to the first frame painted after the page is ready; "
          "API = from the event to the end of the last API answer")
    print("CPU = CPU time per change of all browser processes + the server (of which the server), what a change "
          "costs whatever the load")
    print(f"{'scenario':<52} {'changes':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'API p50':>8} {'API p95':>8} "
          f"{'CPU ms (server)':>16}")
    everything, api_everything, cpu_everything, server_everything = [], [], 0.0, 0.0
    for name, query, changes in SCENARIOS:
        times, api_times, (browser, server) = time_changes(driver, base, rounds, [browser_pid, server_pid], query,
                                                            changes)
        cpu = browser + server
        cpu_everything += cpu * len(times)
        server_everything += server * len(times)
        everything += times
        api_everything += api_times
        print(f"{name:<52} {len(times):>7} {statistics.median(times):>7.1f} {percentile(times, 0.95):>7.1f} "
              f"{max(times):>7.1f} {statistics.median(api_times):>8.1f} {percentile(api_times, 0.95):>8.1f} "
              f"{cpu:>8.1f} ({server:>4.1f})")
    print(f"{'all changes':<52} {len(everything):>7} {statistics.median(everything):>7.1f} "
          f"{percentile(everything, 0.95):>7.1f} {max(everything):>7.1f} {statistics.median(api_everything):>8.1f} "
          f"{percentile(api_everything, 0.95):>8.1f} {cpu_everything / len(everything):>8.1f} "
          f"({server_everything / len(everything):>4.1f})")


def time_changes(driver, base: str, rounds: int, pids: list[int], query: str, changes) -> tuple[list, list, list]:
    """Open ``base?query`` and make ``changes`` ``rounds`` times: the redraw and API times (ms) and,
    per process of ``pids`` (with its descendants), the CPU time per change (ms)."""
    open_page(driver, base, query)
    cpu = [cpu_ms(pid) for pid in pids]
    times, api_times = [], []
    for _ in range(rounds):
        for control, value in changes:
            total, api = driver.execute_async_script(TIME_CHANGE, control, value)
            times.append(total)
            api_times.append(api)
    return times, api_times, [(cpu_ms(pid) - before) / len(times) for pid, before in zip(pids, cpu)]


def compare(driver, servers: dict[str, tuple[str, int]], rounds: int) -> None:
    """Every scenario on each server (label -> (address, pid)), twice, in alternating order, in one
    browser: p50/p95 per label and the p95 ratio of the first label to the last."""
    browser_pid = driver.service.process.pid
    labels = list(servers)
    print(f"redraw p50 / p95 ms and CPU ms per change, {2 * rounds} rounds per scenario, servers alternating")
    print(f"{'scenario':<52} " + " ".join(f"{label[:18]:>24}" for label in labels) + f" {'p95 ratio':>10}")
    every = {label: [] for label in labels}
    for name, query, changes in SCENARIOS:
        times = {label: [] for label in labels}
        cpus = {label: [] for label in labels}
        for order in (labels, labels[::-1]):
            for label in order:
                base, pid = servers[label]
                found, _, cpu = time_changes(driver, base, rounds, [browser_pid, pid], query, changes)
                times[label] += found
                cpus[label].append(sum(cpu))
        for label in labels:
            every[label] += times[label]
        cells = [f"{statistics.median(times[label]):6.1f} / {percentile(times[label], 0.95):6.1f} "
                 f"({statistics.mean(cpus[label]):4.0f})" for label in labels]
        ratio = percentile(times[labels[0]], 0.95) / percentile(times[labels[-1]], 0.95)
        print(f"{name:<52} " + " ".join(f"{cell:>24}" for cell in cells) + f" {ratio:>9.2f}×")
    cells = [f"{statistics.median(every[label]):6.1f} / {percentile(every[label], 0.95):6.1f}      " for label in labels]
    ratio = percentile(every[labels[0]], 0.95) / percentile(every[labels[-1]], 0.95)
    print(f"{'all changes':<52} " + " ".join(f"{cell:>24}" for cell in cells) + f" {ratio:>9.2f}×")


def revision_tree(revision: str, folder: pathlib.Path) -> pathlib.Path:
    """The ``layerlab`` package of git ``revision`` unpacked under ``folder`` (which is returned)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "layerlab"], capture_output=True)
    if archive.returncode:
        raise SystemExit(f"git archive {revision} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def hover(driver, cell) -> None:
    if cell is None:
        return
    from selenium.webdriver.common.action_chains import ActionChains  # only the screenshots hover

    testid, pos = cell
    element = driver.find_element("css selector", f'[data-testid="{testid}"][data-pos="{pos}"]')
    ActionChains(driver, duration=0).move_to_element(element).perform()
    driver.execute_async_script(WAIT_READY)


def screenshot(driver, path: pathlib.Path, selectors: list[str] | None = None) -> None:
    """A PNG of the whole page, or of the box around the elements ``selectors`` pick, beyond the
    window's height."""
    box = driver.execute_script(
        "const rects = arguments[0] ? arguments[0].map(s => document.querySelector(s).getBoundingClientRect())"
        "  : [new DOMRect(0, 0, document.documentElement.scrollWidth, document.documentElement.scrollHeight)];"
        "const left = Math.min(...rects.map(r => r.left)), top = Math.min(...rects.map(r => r.top));"
        "const right = Math.max(...rects.map(r => r.right)), bottom = Math.max(...rects.map(r => r.bottom));"
        "return [left + scrollX, top + scrollY, Math.ceil(right - left), Math.ceil(bottom - top)]", selectors)
    clip = {"x": box[0], "y": box[1], "width": box[2], "height": box[3], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                               "clip": clip})
    # 256 colours are plenty for the page's flat colours, and the file is a third of the size
    Image.open(io.BytesIO(base64.b64decode(shot["data"]))).quantize(colors=256).save(path, optimize=True)


def screenshots(driver, base: str, folder: pathlib.Path, readme: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    views = [(name, query, cell, region) for name, query, cell, region in README] if readme else \
        [(name, query, cell, None) for name, query, cell in SCREENSHOTS]
    for name, query, cell, region in views:
        open_page(driver, base, query)
        hover(driver, cell)
        path = folder / f"{name}.png"
        screenshot(driver, path, region)
        print(f"{path} ({path.stat().st_size:,} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="times each scenario's changes are made (default: 3)")
    parser.add_argument("--screenshots", type=pathlib.Path, help="also save a PNG of each view in this folder")
    parser.add_argument("--readme", type=pathlib.Path, help="only save the README's two pictures in this folder")
    parser.add_argument("--against", metavar="REVISION",
                        help="also serve the page of this git revision and time both, alternating (prints ratios)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        processes = {"working tree": start_server()}
        if args.against:
            processes = {args.against: start_server(revision_tree(args.against, pathlib.Path(folder))), **processes}
        process, base = processes["working tree"]
        driver = start_browser()
        try:
            if args.readme:
                screenshots(driver, base, args.readme, readme=True)
                return
            print(f"layerlab serve page benchmark · {platform.node()} · {os.cpu_count()} CPUs · "
                  f"load average {os.getloadavg()[0]:.1f} · {driver.capabilities['browserName']} "
                  f"{driver.capabilities['browserVersion']} · Python {platform.python_version()} · "
                  f"window {WINDOW[0]}×{WINDOW[1]}")
            started = time.perf_counter()
            if args.against:
                compare(driver, {label: (address, server.pid) for label, (server, address) in processes.items()},
                        args.rounds)
            else:
                measure(driver, base, args.rounds, process.pid)
            print(f"(benchmark wall time {time.perf_counter() - started:.0f} s; load average after: "
                  f"{os.getloadavg()[0]:.1f})")
            if args.screenshots:
                screenshots(driver, base, args.screenshots, readme=False)
        finally:
            driver.quit()
            for server, _ in processes.values():
                server.terminate()
                server.wait(timeout=10)


if __name__ == "__main__":
    main()
