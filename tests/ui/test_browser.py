"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver).

Screenshots of each step go to test-artifacts/ui/ (or $XM_TEST_ARTIFACTS/ui/).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import skip_or_fail
from tests.support.daemon import ROOT, DaemonHandle
from tests.ui.support import UiServer, make_sweep, release, wait_state
from xmanager.launcher.v1 import launcher_pb2 as pb

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("XM_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ui"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        skip_or_fail("Debian's chromium and chromium-driver are not installed (./setup.sh test)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1366,900")  # a laptop screen
    profile = tempfile.mkdtemp(prefix="xm-ui-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.implicitly_wait(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(driver: webdriver.Chrome, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _wait(driver: webdriver.Chrome, timeout: float = 60) -> WebDriverWait[webdriver.Chrome]:
    # Rows are re-rendered when a page of the table loads: an element may go stale meanwhile.
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    )


def _state_of(driver: webdriver.Chrome, unit: int) -> str:
    row = f"#wu-{unit}"
    return str(driver.execute_script(f"return document.querySelector('{row}').dataset.state"))


def test_a_researchers_tour(
    browser: webdriver.Chrome, ui: UiServer, ui_daemon: DaemonHandle, jobs_dir: Path
) -> None:
    launcher = ui_daemon.client
    failing, _ = make_sweep(
        launcher,
        jobs_dir / "failing",
        [{"lr": 0.1}, {"lr": 0.2}],
        title="browser failing sweep",
        codes=[0, 7],
    )
    ui_daemon.wait_all_final(failing, 2)
    live, directory = make_sweep(
        launcher,
        jobs_dir,
        [{"lr": 0.03, "depth": 4}, {"lr": 0.001, "depth": 8}, {"lr": 0.2, "depth": 2}],
        title="browser live sweep",
        tags=("browser",),
        wait=True,
    )
    for unit in (1, 2, 3):
        wait_state(launcher, live, unit, pb.JOB_STATE_RUNNING)

    # The list, then a filter by text.
    browser.get(ui.login_url())
    _wait(browser).until(expected_conditions.title_contains("Experiments"))
    assert "browser live sweep" in browser.page_source
    _shot(browser, "01-experiments")
    search = browser.find_element(By.ID, "search")
    search.send_keys("live sweep")
    search.submit()
    _wait(browser).until(lambda d: "browser failing sweep" not in d.page_source)
    assert "browser live sweep" in browser.page_source
    _shot(browser, "02-filtered")

    # Open the sweep: three running units.
    browser.find_element(By.LINK_TEXT, "browser live sweep").click()
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#wu-3"))
    assert all(_state_of(browser, unit) == "RUNNING" for unit in (1, 2, 3))
    _shot(browser, "03-sweep")

    # Unit 1 ends: the badge turns SUCCEEDED without a reload.
    marker = browser.execute_script("window.notReloaded = true; return 1")
    assert marker == 1
    release(directory, 1)
    _wait(browser).until(lambda d: _state_of(d, 1) == "SUCCEEDED")
    assert browser.execute_script("return window.notReloaded") is True
    _shot(browser, "04-live-succeeded")

    # Sort by a hyperparameter.
    header = browser.find_element(By.CSS_SELECTOR, 'th[data-col="lr"] button')
    header.click()
    _wait(browser).until(
        lambda d: (
            [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#rows tr")]
            == ["2", "1", "3"]
        )
    )
    header = browser.find_element(By.CSS_SELECTOR, 'th[data-col="lr"] button')
    header.click()
    _wait(browser).until(
        lambda d: (
            [r.get_attribute("data-id") for r in d.find_elements(By.CSS_SELECTOR, "#rows tr")]
            == ["3", "1", "2"]
        )
    )
    th = browser.find_element(By.CSS_SELECTOR, 'th[data-col="lr"]')
    assert th.get_attribute("aria-sort") == "descending"
    _shot(browser, "05-sorted-by-lr")

    # Cancel unit 2, confirming the dialog: it ends CANCELLED, live.
    browser.find_element(By.CSS_SELECTOR, "#wu-2 button.cancel").click()
    _wait(browser).until(expected_conditions.alert_is_present())
    browser.switch_to.alert.accept()
    _wait(browser).until(lambda d: _state_of(d, 2) == "CANCELLED")
    assert browser.find_element(By.CSS_SELECTOR, "#wu-2 button.cancel").get_attribute("disabled")
    _shot(browser, "06-cancelled")
    release(directory, 3)
    _wait(browser).until(lambda d: _state_of(d, 3) == "SUCCEEDED")

    # The failing sweep's failing job: its logs, colours rendered.
    browser.get(f"{ui.url}/experiments/{failing}")
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#wu-2"))
    assert _state_of(browser, 2) == "FAILED"
    assert browser.find_element(By.CSS_SELECTOR, "#wu-2 .exit").text == "7"
    browser.find_element(By.CSS_SELECTOR, "#wu-2 a.logs").click()
    _wait(browser).until(lambda d: "failing on purpose" in d.find_element(By.ID, "log").text)
    red = browser.find_element(By.CSS_SELECTOR, "#log .fg-red")
    assert red.text == "error:"
    assert "exited with code 7" in browser.page_source
    _shot(browser, "07-failing-logs")

    # The dark theme, by keyboard.
    theme = browser.find_element(By.ID, "theme")
    theme.send_keys(" ")
    assert browser.execute_script("return document.documentElement.dataset.theme") in (
        "dark",
        "light",
    )
    _shot(browser, "08-theme")
