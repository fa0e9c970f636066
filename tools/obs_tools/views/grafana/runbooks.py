"""One Grafana dashboard per runbook (docs/runbooks/*.md), so that an alert's runbook_url
opens from an e-mail: the runbook's Markdown in one text panel.

Reads no environment variables.
"""

from __future__ import annotations

from pathlib import Path

from ..links import RUNBOOK_UID_PREFIX, SERVICES_DASHBOARD_UID, STACK_DASHBOARD_UID
from .panels import RUNBOOKS_LINK, TAG, Layout, dashboard, dashboard_link, panel


def runbook(path: Path) -> dict:
    """docs/runbooks/NAME.md as a dashboard with one Markdown text panel."""
    text = path.read_text()
    title = text.splitlines()[0].lstrip("# ").strip()
    layout = Layout()
    body = panel(
        layout,
        "text",
        title,
        [],
        w=24,
        h=30,
        options={
            "mode": "markdown",
            "content": text,
            "code": {"language": "plaintext", "showLineNumbers": False, "showMiniMap": False},
        },
    )
    # A text panel queries nothing.
    del body["datasource"], body["targets"]
    return dashboard(
        f"{RUNBOOK_UID_PREFIX}{path.stem}",
        title,
        f"docs/runbooks/{path.name}, rendered. Alerts link here (runbook_url).",
        [body],
        tags=[TAG, "runbook"],
        refresh="",
        links=[
            dashboard_link("Services overview", SERVICES_DASHBOARD_UID),
            dashboard_link("Stack health", STACK_DASHBOARD_UID),
            RUNBOOKS_LINK,
        ],
    )


def runbooks(runbooks_dir: Path) -> dict[str, dict]:
    """File name -> dashboard, one for each runbook in `runbooks_dir`, by name."""
    return {f"runbook-{p.stem}.json": runbook(p) for p in sorted(runbooks_dir.glob("*.md"))}
