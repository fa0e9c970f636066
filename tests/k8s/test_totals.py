"""tools/obs_tools/deploy/totals.py (the resource table of docs/kubernetes.md) and the budget
of the real k8s/ render: every container has requests and limits, and the whole stack fits
the 4 CPU / 8 GiB Minikube that docs/kubernetes.md promises. Rendering needs kubectl (kustomize),
no cluster.
"""

from __future__ import annotations

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.deploy import resources, totals
from obs_tools.deploy.contract import IMAGES, image_tag

from tests.k8s.render import kustomize


def workload(kind, name, containers, init=(), **spec):
    template = {"spec": {"containers": list(containers), "initContainers": list(init)}}
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"template": template, **spec},
    }


def container(name, requests, limits):
    return {
        "name": name,
        "image": f"{name}:1",
        "resources": {
            "requests": dict(zip(("cpu", "memory"), requests, strict=True)),
            "limits": dict(zip(("cpu", "memory"), limits, strict=True)),
        },
    }


SAMPLE = yaml.safe_dump_all(
    [
        workload(
            "Deployment", "web", [container("web", ("100m", "128Mi"), ("1", "256Mi"))], replicas=2
        ),
        workload(
            "StatefulSet",
            "db",
            [container("db", ("500m", "1Gi"), ("1500m", "1536Mi"))],
            # A bigger init container than the main one sets the pod's CPU.
            init=[container("copy", ("2", "16Mi"), ("2", "32Mi"))],
        ),
        workload("Job", "setup", [container("setup", ("10m", "32Mi"), ("200m", "64Mi"))]),
        {"kind": "ConfigMap", "metadata": {"name": "x"}},
    ]
)


def test_one_row_per_container_with_init_containers_marked():
    rows = totals.rows(SAMPLE)
    assert [(r.workload, r.container, r.copies) for r in rows] == [
        ("Deployment/web", "web", 2),
        ("StatefulSet/db", "(init) copy", 1),
        ("StatefulSet/db", "db", 1),
        ("Job/setup", "setup", 1),
    ]
    assert rows[0].requests == (100, 128 * 2**20)
    assert rows[2].limits == (1500, 1536 * 2**20)


def test_limits_add_up_per_pod_like_requests():
    cpu, memory = totals.limit_totals(SAMPLE)
    # web 2 x (1000m, 256Mi); db max(init 2000m, 1500m) and 1536Mi; setup 200m, 64Mi.
    assert cpu == pytest.approx(2 * 1000 + 2000 + 200)
    assert memory == pytest.approx((2 * 256 + 1536 + 64) * 2**20)


def test_report_states_the_totals_and_the_minikube_sizing():
    text = totals.report(SAMPLE, markdown=True)
    needs = resources.render_needs(SAMPLE)
    assert f"Total requests: {needs.cpu_m:.0f}m CPU" in text
    assert "| ns | Deployment/web | web | web:1 | 2 | 100m / 128Mi | 1000m / 256Mi |" in text
    assert resources.minikube_sizing(needs).explanation in text


@pytest.fixture(scope="module")
def render() -> str:
    return kustomize()


def test_every_container_has_cpu_and_memory_requests_and_limits(render):
    rows = totals.rows(render)
    assert len(rows) >= 14
    missing = [
        f"{r.namespace}/{r.workload}/{r.container}" for r in rows if 0 in (*r.requests, *r.limits)
    ]
    assert not missing, f"containers without CPU and memory requests and limits: {missing}"
    over = [
        f"{r.workload}/{r.container}"
        for r in rows
        if r.requests[0] > r.limits[0] or r.requests[1] > r.limits[1]
    ]
    assert not over, f"requests above limits: {over}"


def test_the_stack_fits_the_minikube_the_docs_name(render):
    sizing = resources.minikube_sizing(resources.render_needs(render))
    assert sizing.cpus <= 4 and sizing.memory_mb <= 8192, sizing.explanation


def test_the_kubernetes_page_shows_the_current_totals(render):
    needs = resources.render_needs(render)
    page = (REPO / "docs" / "kubernetes.md").read_text()
    line = f"Total requests: {needs.cpu_m:.0f}m CPU, {needs.memory / 2**20:.0f}Mi memory"
    assert line in page, (
        "docs/kubernetes.md's resource totals are stale: paste `obs-deploy totals "
        "--markdown` into its Resources section"
    )


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.service)
def test_service_images_carry_the_version_make_up_builds(render, image):
    images = {r.image for r in totals.rows(render)}
    assert f"{image.name}:{image_tag(image.service)}" in images
