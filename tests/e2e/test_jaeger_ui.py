"""Jaeger on the local stack serves its real web UI (jaeger-ui, built from source and
embedded by scripts/bootstrap.sh), not the placeholder page that a build without the UI
assets serves: the page, every script and stylesheet it loads, and the page again at a
deep link (/trace/<id>, as Grafana and the e-mails open it).

The UI in a real browser: tests/e2e/browser/test_jaeger_ui.py. Reads no environment
variables.
"""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.e2e

# The page that cmd/query/app/ui/placeholder/index.html of Jaeger's module serves.
PLACEHOLDER = "This is not the Jaeger UI you are looking for"


def test_jaeger_serves_the_real_ui_and_its_assets(local_stack):
    jaeger = local_stack.url("jaeger_query")
    page = httpx.get(f"{jaeger}/", timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert PLACEHOLDER not in page.text, (
        "Jaeger serves the placeholder page: its binary was built without the UI "
        "(scripts/bootstrap.sh install_jaeger)\n" + local_stack.failure_context("jaeger")
    )
    assert "<title>Jaeger UI</title>" in page.text, page.text[:500]
    # Relative to the page's <base href="/">: ./static/index-<hash>.js and the like.
    assets = re.findall(r'(?:src|href)="\.?(/static/[^"]+\.(?:js|css))"', page.text)
    assert any(a.endswith(".js") for a in assets), f"no script in the page: {page.text[:800]}"
    for asset in assets:
        response = httpx.get(f"{jaeger}{asset}", timeout=10)
        assert response.status_code == 200 and len(response.content) > 1000, (
            f"{asset}: HTTP {response.status_code}, {len(response.content)} bytes"
        )


def test_jaeger_serves_the_ui_at_a_deep_link(local_stack):
    jaeger = local_stack.url("jaeger_query")
    page = httpx.get(f"{jaeger}/trace/0123456789abcdef0123456789abcdef", timeout=10)
    assert page.status_code == 200 and "<title>Jaeger UI</title>" in page.text, page.text[:500]
