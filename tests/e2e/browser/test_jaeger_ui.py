"""The Jaeger UI (built from source and embedded by scripts/bootstrap.sh) in a real
browser: its search form finds a request's trace that crosses frontend and backend, the
trace page shows both services' spans, and its "Logs in Kibana" link (jaeger/
ui-config.json) carries that trace's id.

Every run saves the trace page as `<run dir>/logs/browser/jaeger-trace.png`
(docs/images/jaeger-trace.png is one of them). Reads no environment variables.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from obs_tools.common.paths import REPO
from selenium.webdriver.common.by import By

from tests.support.polling import poll_until

pytestmark = pytest.mark.browser

(LOGS_LINK,) = json.loads((REPO / "jaeger" / "ui-config.json").read_text())["linkPatterns"]


def jaeger_trace(jaeger: str, trace_id: str) -> dict | None:
    response = httpx.get(f"{jaeger}/api/traces/{trace_id}", timeout=10)
    if response.status_code != 200:
        return None
    (trace,) = response.json()["data"]
    return trace


def services_of(trace: dict | None) -> set[str]:
    if not trace:
        return set()
    return {trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]}


def tag_with_value(trace: dict, value: str) -> str:
    """The span attribute holding `value`: the instrumentation names the User-Agent's
    attribute after its semantic-conventions version, which is not this test's business."""
    keys = {t["key"] for s in trace["spans"] for t in s["tags"] if t["value"] == value}
    assert len(keys) == 1, f"no single span attribute holds {value!r}: {sorted(keys)}"
    return keys.pop()


@pytest.fixture(scope="module")
def traced_request(local_stack):
    """One GET /items/2 through the frontend (which calls the backend), with a known
    trace id and a User-Agent of its own, once Jaeger holds both services' spans."""
    trace_id = secrets.token_hex(16)
    user_agent = f"obs-browser-test-{secrets.token_hex(6)}"
    response = httpx.get(
        f"{local_stack.url('frontend')}/items/2",
        headers={
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            "user-agent": user_agent,
        },
        timeout=15,
    )
    assert response.status_code == 200, response.text
    jaeger = local_stack.url("jaeger_query")
    trace = poll_until(
        lambda: services_of(t := jaeger_trace(jaeger, trace_id)) == {"frontend", "backend"} and t,
        f"Jaeger's API to hold trace {trace_id} with frontend and backend spans",
        timeout=60,
        on_timeout=lambda: local_stack.failure_context("jaeger", "frontend", "backend"),
    )
    # A tag no other trace has: the search must find this trace among the traffic's.
    tag = f'{tag_with_value(trace, user_agent)}="{user_agent}"'
    return {"trace_id": trace_id, "tag": tag}


def visible(driver, css: str) -> list:
    return [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]


def choose_service(driver, service: str) -> None:
    """Pick `service` in the search form's Service select (antd), as a user types it."""
    select = poll_until(
        lambda: visible(driver, "#service, [name=service]") or visible(driver, ".ant-select"),
        "the Jaeger UI's Service select",
        timeout=30,
    )[0]
    select.click()
    search = poll_until(
        lambda: visible(driver, ".ant-select-focused input, .ant-select-open input"),
        "the Service select to open",
        timeout=10,
    )[0]
    search.send_keys(service)
    option = poll_until(
        lambda: [
            o
            for o in visible(driver, ".ant-select-item-option")
            if o.get_attribute("title") == service or o.text.strip() == service
        ],
        f"the option {service!r} in the Service select",
        timeout=10,
    )[0]
    option.click()


def test_search_finds_the_trace_and_its_page_shows_both_services(
    local_stack, browser, browser_dir, traced_request
):
    jaeger = local_stack.url("jaeger_query")
    trace_id = traced_request["trace_id"]
    logs = lambda: local_stack.failure_context("jaeger")  # noqa: E731

    browser.get(f"{jaeger}/search")
    choose_service(browser, "frontend")
    tags = visible(browser, "input[name=tags]")[0]
    tags.send_keys(traced_request["tag"])
    visible(browser, "button.SearchForm--submit")[0].click()

    result = poll_until(
        lambda: [
            r
            for r in visible(browser, ".ResultItem")
            if r.find_elements(By.CSS_SELECTOR, f"a[href$='/trace/{trace_id}']")
        ],
        f"the Jaeger UI's search to list trace {trace_id}",
        timeout=30,
        on_timeout=logs,
    )[0]
    service_tags = sorted(
        t.text.split(" (")[0]
        for t in result.find_elements(By.CSS_SELECTOR, ".ResultItem--serviceTag")
    )
    assert service_tags == ["backend", "frontend"], (
        f"search result of {trace_id} lists services {service_tags}"
    )

    result.find_element(By.CSS_SELECTOR, f"a[href$='/trace/{trace_id}']").click()
    services = poll_until(
        lambda: (
            {e.text.strip() for e in visible(browser, ".span-svc-name")} >= {"frontend", "backend"}
            and {e.text.strip() for e in visible(browser, ".span-svc-name")}
        ),
        f"the trace page of {trace_id} to show frontend and backend spans",
        timeout=30,
        on_timeout=logs,
    )
    assert services == {"frontend", "backend"}, services
    browser.save_screenshot(str(browser_dir / "jaeger-trace.png"))

    link = poll_until(
        lambda: visible(browser, f"a[title='{LOGS_LINK['text']}']"),
        f"the trace page's {LOGS_LINK['text']!r} link",
        timeout=10,
        on_timeout=logs,
    )[0]
    href = link.get_attribute("href")
    assert href.startswith(LOGS_LINK["url"].split("#", 1)[0]), href
    assert f"trace.id:{trace_id}" in href, f"{LOGS_LINK['text']!r} links to {href}"
