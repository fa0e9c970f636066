"""The documentation: README.md is a landing page of at most 200 lines that links every
page of docs/; every relative link and #anchor in README.md, tests/README.md and
docs/*.md resolves (a file or folder that exists, a heading that exists, by GitHub's slug
rules); every `make TARGET` they show is a Makefile target; `make check` deselects every
registered pytest marker and tests/README.md lists them all.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from obs_tools.common.paths import REPO

README_MAX_LINES = 200
# The pages the README must link (issue #19): one per subject.
PAGES = (
    "local-stack.md",
    "kubernetes.md",
    "views-and-alerts.md",
    "services.md",
    "telemetry.md",
    "testing.md",
    "troubleshooting.md",
    "benchmarks.md",
    "container-images.md",
)

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
# [text](target) and ![alt](target), with an optional "title"; and [label]: target.
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def prose_lines(text: str):
    """(line number, line) of the Markdown outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation other than '-' and '_'
    dropped (backticks and '*' included), each space a '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link and image, code spans and blocks left out."""
    found = []
    for number, line in prose_lines(text):
        bare = INLINE_CODE.sub("", line)
        found += [(number, target) for target in INLINE_LINK.findall(bare)]
        reference = REFERENCE_LINK.match(bare)
        if reference:
            found.append((number, reference.group(1)))
    return found


def broken_links(page: Path) -> list[str]:
    """Every relative link of a Markdown page whose file or folder does not exist, or
    whose #anchor names no heading of the page it points to."""
    problems = []
    for number, target in links(page.read_text()):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page.name}:{number}: {target}"
        if not resolved.exists():
            problems.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text()):
            problems.append(f"{where}: no heading #{anchor} in {resolved.name}")
    return problems


def documentation() -> list[Path]:
    pages = sorted((REPO / "docs").glob("*.md"))
    return [REPO / "README.md", REPO / "tests" / "README.md", *pages]


def test_the_readme_is_a_landing_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_the_readme_links_every_page():
    targets = {target.partition("#")[0] for _, target in links((REPO / "README.md").read_text())}
    missing = [page for page in PAGES if f"docs/{page}" not in targets]
    assert not missing, f"README.md does not link {missing}"
    assert all((REPO / "docs" / page).is_file() for page in PAGES)


@pytest.mark.parametrize("page", documentation(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    problems = broken_links(page)
    assert not problems, "\n".join(problems)


def test_every_make_target_shown_exists():
    targets = set(re.findall(r"^([a-z0-9-]+):", (REPO / "Makefile").read_text(), re.M))
    shown = {}
    for page in documentation():
        for name in re.findall(r"(?:^|`)make ([a-z][a-z0-9-]*)", page.read_text(), re.M):
            shown.setdefault(name, page.name)
    unknown = {name: page for name, page in shown.items() if name not in targets}
    assert len(shown) > 10 and not unknown, unknown


def test_slugs_follow_github():
    assert slug("What `make demo` starts") == "what-make-demo-starts"
    assert slug("The `OTEL_*` variables") == "the-otel_-variables"
    assert slug("Kubernetes (Minikube)") == "kubernetes-minikube"
    assert (
        slug("What runs for real, what is held against upstream, what is unproven")
        == "what-runs-for-real-what-is-held-against-upstream-what-is-unproven"
    )
    assert slug("Grafana (http://localhost:3000)") == "grafana-httplocalhost3000"
    assert anchors("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n") == {
        "a",
        "notes",
        "notes-1",
    }


def test_the_checker_finds_broken_links(tmp_path):
    """The check above fails on a bad sample: a missing file, a missing anchor (here and
    in another page); good links, code and external addresses pass."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## Some `code` here\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n## Next steps\n\n"
        "[good](docs/other.md) [good anchor](docs/other.md#some-code-here)\n"
        "[here](#next-steps) [folder](docs/) ![image](docs/other.md)\n"
        "[web](https://example.com/missing.md) `[code](missing.md)`\n"
        "```\n[block](missing.md)\n```\n"
        "[missing](docs/gone.md)\n"
        "[bad anchor](docs/other.md#nowhere)\n"
        "[bad local anchor](#next-step)\n"
        "[ref]: docs/also-gone.md\n"
    )
    assert broken_links(page) == [
        "README.md:11: docs/gone.md: no such file",
        "README.md:12: docs/other.md#nowhere: no heading #nowhere in other.md",
        "README.md:13: #next-step: no heading #next-step in README.md",
        "README.md:14: docs/also-gone.md: no such file",
    ]


def registered_markers() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {line.partition(":")[0] for line in config["tool"]["pytest"]["ini_options"]["markers"]}


def test_the_fast_lane_deselects_every_marker_and_tests_readme_lists_them():
    # `make check` must stay fast: a new marker that needs a backend and is not in FAST
    # would silently join the fast lane.
    fast = re.search(r"^FAST := not \((.*)\)$", (REPO / "Makefile").read_text(), re.M)
    assert fast, "Makefile has no FAST := not (...) line"
    markers = registered_markers()
    assert set(fast.group(1).split(" or ")) == markers
    table = (REPO / "tests" / "README.md").read_text()
    unlisted = [marker for marker in markers if f"| `{marker}` |" not in table]
    assert not unlisted, f"tests/README.md's marker table misses {unlisted}"
