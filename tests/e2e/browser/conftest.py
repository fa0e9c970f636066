"""A real browser for the UI tests: Debian's headless chromium driven through its
chromedriver by Selenium, one browser per session, on the session's local stack
(tests/e2e/conftest.py: the same stack as the other e2e tests, not a second one).

When a test fails, the page it was on is saved as a screenshot in the stack's log folder
(`<run dir>/logs/browser/<test>.png`, next to every component's log) and the path is
printed in the failure report's "browser screenshot" section.

Reads CI (through require_browser): with CI=true a missing chromium or chromedriver fails
the test instead of skipping it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.support.polling import free_port
from tests.support.requirements import unavailable

# Debian's packages (scripts/versions.env CHROMIUM_*); never a browser that Selenium
# Manager would download (nothing is downloaded where the tests run).
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Bounds every page load and script; the waits in the tests bound themselves.
PAGE_LOAD_TIMEOUT_S = 30


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if not missing:
        return
    unavailable(f"not installed: {', '.join(missing)}; run `scripts/bootstrap.sh browser`")


@pytest.fixture(scope="session")
def browser_dir(local_stack) -> Path:
    """Where the browser's log and the failure screenshots go: beside the stack's logs."""
    directory = local_stack.stack.log_dir / "browser"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def browser(local_stack, browser_dir, tmp_path_factory):
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        # As root (CI here), chromium refuses to start with its sandbox on.
        "--no-sandbox",
        # /dev/shm is small in some containers; chromium then crashes on big pages.
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        options.add_argument(argument)
    service = Service(
        executable_path=CHROMEDRIVER,
        port=free_port(),
        log_output=str(browser_dir / "chromedriver.log"),
    )
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    driver.set_script_timeout(PAGE_LOAD_TIMEOUT_S)
    try:
        yield driver
    finally:
        # Stops chromium and chromedriver (both started by this fixture).
        driver.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    driver = item.funcargs.get("browser")
    directory = item.funcargs.get("browser_dir")
    if driver is None or directory is None:
        return
    path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', item.name)}.png"
    try:
        saved = driver.save_screenshot(str(path))
        detail = f"{path} (page {driver.current_url})" if saved else f"not saved to {path}"
    except Exception as exc:  # the browser itself may be what failed
        detail = f"not saved to {path}: {exc!r}"
    report.sections.append(("browser screenshot", detail))
