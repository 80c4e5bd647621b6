"""Dashboard page load for an experiment of 5,000 work units (target: under 1 s).

    .venv/bin/python bench/ui_page_load.py [--units=5000] [--runs=10] [--skip_browser]

A real daemon holds a finished sweep of `units` work units (five hyperparameters each, one in
ten failed); `xmanager ui` runs as its own process, a client of the daemon like any other.
Measured:

- over HTTP (httpx, as a browser would fetch them): the experiment page's HTML, then the first
  page of its table (100 rows), its timeline and its chart, fetched concurrently. Cold (the
  first load) and warm (median of `runs`); each response's size (no page may exceed 2 MB).
- in headless Chromium (Debian's chromium + chromedriver): from navigation start to the table's
  first page rendered, and to the timeline drawn, median of `runs`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.daemon import DaemonHandle, add_work_units, local_job  # noqa: E402
from xmanager.launcher.v1 import launcher_pb2 as pb  # noqa: E402

TWO_MB = 2 * 1024 * 1024


def _sweep(daemon: DaemonHandle, units: int) -> int:
    created = daemon.client.stub.CreateExperiment(
        pb.CreateExperimentRequest(
            experiment=pb.Experiment(title=f"bench: {units} units", tags=["bench"])
        )
    )
    rng = random.Random(0)
    requests = []
    for i in range(units):
        params = {
            "lr": rng.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2]),
            "batch_size": rng.choice([32, 64, 128, 256]),
            "model": rng.choice(["resnet50", "vit_b16", "mlp"]),
            "seed": i,
            "optimizer": {"name": rng.choice(["adam", "sgd"]), "momentum": 0.9},
        }
        binary = "/bin/false" if i % 10 == 3 else "/bin/true"
        requests.append(
            pb.AddWorkUnitRequest(
                experiment_id=created.id,
                request_id=os.urandom(8).hex(),
                args_json=json.dumps(params),
                jobs=[local_job("train", binary, f"--seed={i}")],
            )
        )
    results = add_work_units(daemon.client, requests)
    assert all(r.error_code == 0 for r in results)
    daemon.wait_all_final(created.id, units, timeout=600)
    return int(created.id)


def _start_ui(state: Path) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "xmanager.cli", f"--state_dir={state}", "ui", "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.match(r"open (http://[^/]+)(/login\?code=\S+)", line)
        if match:
            return process, match.group(1), match.group(2)
    raise RuntimeError("xmanager ui did not print its URL")


def _load(client: httpx.Client, experiment_id: int) -> tuple[float, float, dict[str, int]]:
    """The experiment page as a browser loads it: HTML, then its three API calls at once.
    Returns (seconds to the table's first page, seconds to every part, response sizes)."""
    sizes: dict[str, int] = {}
    start = time.perf_counter()
    page = client.get(f"/experiments/{experiment_id}")
    page.raise_for_status()
    sizes["page (HTML)"] = len(page.content)
    api = f"/api/experiments/{experiment_id}"
    urls = {
        "table, first 100 rows": f"{api}/units?offset=0&limit=100",
        "timeline": f"{api}/timeline",
        "chart (lr)": f"{api}/chart?param=lr",
    }
    done: dict[str, float] = {}

    def get(name: str) -> httpx.Response:
        response = client.get(urls[name])
        done[name] = time.perf_counter() - start
        return response

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = dict(zip(urls, pool.map(get, urls), strict=True))
    elapsed = time.perf_counter() - start
    for name, response in responses.items():
        response.raise_for_status()
        sizes[name] = len(response.content)
    return done["table, first 100 rows"], elapsed, sizes


def _browser(base: str, cookie: str, experiment_id: int, runs: int) -> list[tuple[float, float]]:
    from selenium import webdriver  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1366,900")
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService("/usr/bin/chromedriver")
    )
    times = []
    try:
        driver.get(base + "/static/ui.css")  # the session cookie of the HTTP client
        driver.add_cookie({"name": "xm_ui_session", "value": cookie, "path": "/"})
        for _ in range(runs + 1):
            driver.get(f"{base}/experiments/{experiment_id}")
            deadline = time.monotonic() + 30
            while True:
                marks = driver.execute_script(
                    "var rows = document.querySelectorAll('#rows tr[data-id]').length;"
                    "var drawn = document.getElementById('timeline').getAttribute('aria-label');"
                    "window.xmRows = window.xmRows || (rows ? performance.now() : 0);"
                    "window.xmTimeline = window.xmTimeline || "
                    "  (drawn.indexOf('over') > 0 ? performance.now() : 0);"
                    "return [window.xmRows, window.xmTimeline];"
                )
                if marks[0] and marks[1]:
                    times.append((marks[0] / 1000, marks[1] / 1000))
                    break
                assert time.monotonic() < deadline, "the page did not render"
                time.sleep(0.005)
    finally:
        driver.quit()
    return times[1:]  # the first load warms the browser's cache of scripts and styles


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--skip_browser", action="store_true")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="xm-bench-ui-", dir="/tmp"))
    daemon = DaemonHandle(state, ["--max_running_jobs=64"])
    daemon.start()
    ui = None
    try:
        started = time.perf_counter()
        experiment_id = _sweep(daemon, args.units)
        print(
            f"sweep of {args.units} units recorded and finished in "
            f"{time.perf_counter() - started:.1f} s"
        )
        print(
            f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
            f"({os.cpu_count()} cores)"
        )
        ui, base, login = _start_ui(state)
        client = httpx.Client(base_url=base, timeout=60)
        client.get(login, follow_redirects=True).raise_for_status()
        cold_table, cold_all, sizes = _load(client, experiment_id)
        warm = [_load(client, experiment_id) for _ in range(args.runs)]
        table = [w[0] for w in warm]
        every = [w[1] for w in warm]
        print(
            f"HTTP, page + first table page: cold {cold_table * 1000:.0f} ms, warm median "
            f"{statistics.median(table) * 1000:.0f} ms (min {min(table) * 1000:.0f}, "
            f"max {max(table) * 1000:.0f}, {args.runs} runs)"
        )
        print(
            f"HTTP, page + table + timeline + chart: cold {cold_all * 1000:.0f} ms, warm median "
            f"{statistics.median(every) * 1000:.0f} ms (min {min(every) * 1000:.0f}, "
            f"max {max(every) * 1000:.0f})"
        )
        biggest = client.get(f"/api/experiments/{experiment_id}/units?limit=500")
        sizes["table, largest page (500 rows)"] = len(biggest.content)
        for name, size in sizes.items():
            flag = "" if size <= TWO_MB else "  OVER 2 MB"
            print(f"  {name}: {size:,} B{flag}")
        sort = f"/api/experiments/{experiment_id}/units?sort=lr&desc=1&f.model=vit&limit=100"
        sorts = []
        for _ in range(args.runs):
            start = time.perf_counter()
            client.get(sort).raise_for_status()
            sorts.append(time.perf_counter() - start)
        print(f"sort by lr, filter model: median {statistics.median(sorts) * 1000:.0f} ms")
        if not args.skip_browser:
            cookie = str(client.cookies["xm_ui_session"])
            times = _browser(base, cookie, experiment_id, args.runs)
            rows = [t[0] for t in times]
            timeline = [t[1] for t in times]
            print(
                f"Chromium, navigation to first table page rendered: median "
                f"{statistics.median(rows) * 1000:.0f} ms (min {min(rows) * 1000:.0f}, "
                f"max {max(rows) * 1000:.0f}); to timeline drawn: median "
                f"{statistics.median(timeline) * 1000:.0f} ms ({len(times)} runs)"
            )
    finally:
        if ui is not None:
            ui.terminate()
            ui.wait(10)
        daemon.stop()
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
