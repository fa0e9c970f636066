"""The OCI runtime wrapper for sandboxes that refuse setrlimit (no podman needed).

A stand-in runc (a shell script) records what the wrapper passes on, so these tests run
anywhere; tests/images/test_service_images.py uses the wrapper with the real runc.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.podman import RUNTIME_WRAPPER, SETRLIMIT_REFUSED

SPEC = {
    "ociVersion": "1.0.2",
    "process": {
        "args": ["gunicorn"],
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}],
        # The kubelet asks for one in every container (real node tests).
        "oomScoreAdj": -998,
    },
    "root": {"path": "rootfs", "readonly": True},
}


@pytest.fixture
def fake_runc(tmp_path):
    script = tmp_path / "runc"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$(dirname "$0")/argv"\n')
    script.chmod(0o755)
    return script


def run_wrapper(fake_runc, *args):
    subprocess.run(
        [sys.executable, str(RUNTIME_WRAPPER), *args],
        env={"OBS_RUNC": str(fake_runc)},
        check=True,
        timeout=30,
    )
    return (fake_runc.parent / "argv").read_text().splitlines()


@pytest.mark.parametrize("bundle_arg", ["--bundle={}", "--bundle {}", "-b {}"])
def test_create_drops_rlimits_from_the_bundle_and_passes_arguments_on(
    fake_runc, tmp_path, bundle_arg
):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(SPEC))
    args = ["--root", "/run/runc", "create", *bundle_arg.format(bundle).split(), "ctr-1"]
    assert run_wrapper(fake_runc, *args) == args
    spec = json.loads((bundle / "config.json").read_text())
    assert "rlimits" not in spec["process"]
    assert "oomScoreAdj" not in spec["process"]
    assert spec["process"]["args"] == ["gunicorn"]
    assert spec["root"] == SPEC["root"]


def test_exec_drops_rlimits_from_the_process_file(fake_runc, tmp_path):
    process = tmp_path / "process.json"
    process.write_text(json.dumps(SPEC["process"]))
    run_wrapper(fake_runc, "exec", "--process", str(process), "ctr-1")
    assert json.loads(process.read_text()) == {"args": ["gunicorn"]}


def test_other_commands_touch_nothing(fake_runc, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SPEC))
    assert run_wrapper(fake_runc, "--root", str(tmp_path), "delete", "ctr-1") == [
        "--root",
        str(tmp_path),
        "delete",
        "ctr-1",
    ]
    assert json.loads((tmp_path / "config.json").read_text()) == SPEC


@pytest.mark.parametrize(
    ("stderr", "refused"),
    [
        (
            "Error: runc: runc create failed: unable to start container process: error during "
            "container init: error setting rlimits for ready process: error setting rlimit "
            "type 7: operation not permitted: OCI permission denied",
            True,
        ),
        ("Error: crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission", True),
        ("Error: runc: exec failed: no such file or directory", False),
        ("Error: short-name resolution enforced", False),
    ],
)
def test_only_the_setrlimit_refusal_selects_the_wrapper(stderr, refused):
    assert bool(SETRLIMIT_REFUSED.search(stderr)) is refused
