"""Repository-wide checks: YAML lint, the environment table of docs/services.md, pinned versions."""

from __future__ import annotations

import re
import subprocess
import sys

from obs_tools.common.paths import REPO


def test_yaml_files_pass_yamllint():
    files = [str(p) for p in REPO.rglob("*.yml") if ".run" not in p.parts] + [
        str(p) for p in REPO.rglob("*.yaml") if ".run" not in p.parts
    ]
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(REPO / ".yamllint.yml"), *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def environment_variables_read_by_the_code() -> set[str]:
    names = set()
    pattern = re.compile(r'env_(?:str|bool|float|int)\(\s*\w+,\s*"([A-Z0-9_]+)"')
    for path in (REPO / "services").rglob("*.py"):
        names |= set(pattern.findall(path.read_text()))
    return names


def test_services_page_documents_every_environment_variable():
    page = (REPO / "docs" / "services.md").read_text()
    names = environment_variables_read_by_the_code()
    assert len(names) >= 10
    missing = sorted(n for n in names if f"`{n}`" not in page)
    assert not missing, f"docs/services.md's environment table lacks {missing}"
    for standard in (
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_RESOURCE_ATTRIBUTES",
    ):
        assert f"`{standard}`" in page


def test_container_images_are_pinned_by_exact_tag():
    for dockerfile in (REPO / "services").glob("*/Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("FROM "):
                image = line.split()[1]
                assert ":" in image and not image.endswith(":latest"), f"{dockerfile}: {image}"
                assert re.search(r":\d+\.\d+\.\d+", image), f"{dockerfile}: {image} is not exact"


def test_every_python_module_opens_with_a_docstring():
    for path in list((REPO / "services").rglob("*.py")) + list((REPO / "scripts").rglob("*.py")):
        text = path.read_text().lstrip()
        assert text.startswith('"""'), f"{path.relative_to(REPO)} has no module docstring"
