"""Prometheus' and Alertmanager's own web UIs in a real browser, on the session's local
stack: Prometheus' targets page shows both services up, and Alertmanager's alert list
shows a firing alert (Watchdog, which fires always: prometheus/rules/).

Reads no environment variables.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.support.polling import poll_until

pytestmark = pytest.mark.browser


def page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def target_states(driver, job: str) -> list[str]:
    """The State column of `job`'s table on Prometheus' classic targets page."""
    header = driver.find_elements(By.ID, f"job-{job}")
    if not header:
        return []
    table = header[0].find_element(By.XPATH, "ancestor::div[@class='table-container']//table")
    return [cell.text.strip() for cell in table.find_elements(By.CSS_SELECTOR, "tbody td.state")]


@pytest.mark.parametrize("job", ["frontend", "backend"])
def test_prometheus_targets_page_shows_the_service_up(local_stack, browser, job):
    def shown_up():
        # A reload per try: the page is rendered by the server at each load. Debian's
        # Prometheus serves only the classic UI, under /classic/ (its / redirects there).
        browser.get(f"{local_stack.url('prometheus')}/classic/targets")
        states = target_states(browser, job)
        return states and all(state == "UP" for state in states) and states

    states = poll_until(
        shown_up,
        f"Prometheus' targets page to show job {job} up",
        timeout=60,
        interval=2,
        on_timeout=lambda: (
            f"page text:\n{page_text(browser)[:2000]}\n"
            + local_stack.failure_context("prometheus", job)
        ),
    )
    assert states == ["UP"], f"job {job} has {len(states)} targets: {states}"


def test_alertmanager_ui_lists_a_firing_alert(local_stack, browser):
    def listed():
        browser.get(f"{local_stack.url('alertmanager')}/#/alerts")
        return poll_until(
            lambda: 'alertname="Watchdog"' in page_text(browser),
            "Alertmanager's UI to render its alert list",
            timeout=10,
        )

    poll_until(
        listed,
        "Alertmanager's UI to list the firing Watchdog alert",
        timeout=120,
        interval=3,
        on_timeout=lambda: (
            f"page text:\n{page_text(browser)[:2000]}\n"
            + local_stack.failure_context("prometheus", "alertmanager")
        ),
    )
