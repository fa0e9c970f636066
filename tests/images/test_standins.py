"""The stand-ins of the upstream images (tests/support/standins.py) held against the image
contracts (tests/k8s/image_contracts.yaml): each image, as podman inspects it, has
exactly the contract's User, Entrypoint, Cmd and WorkingDir, its user has the contract's
uid, and its process starts (with --network=none) and prints the version that
scripts/versions.env pins. Every contract image is either a stand-in or EXCLUDED.

Reads CI (through tests.support.requirements): with CI=true a stand-in whose inputs the
bootstrap has not made fails instead of skipping.
"""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from tests.support import podman as podman_support
from tests.support import standins
from tests.support.image_fixtures import base_image
from tests.support.node_images import STANDIN_LABEL
from tests.support.polling import poll_until
from tests.support.requirements import unavailable

pytestmark = pytest.mark.images

NAMES = list(standins.STANDINS)
# `podman run` of a stand-in: an Elasticsearch CLI starts a JVM, the rest are instant.
RUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def contracts() -> dict[str, dict]:
    return standins.load_contracts()


@pytest.fixture(scope="module")
def built(podman, contracts):
    """Builds a stand-in on first use (skipped when podman holds it with the same key)."""
    done: dict[str, standins.Built | Exception] = {}

    def get(name: str) -> standins.Built:
        if name not in done:
            try:
                done[name] = standins.build(podman, base_image(), name, contracts)
            except standins.MissingInput as error:
                done[name] = error
        if isinstance(done[name], Exception):
            unavailable(str(done[name]))
        return done[name]

    return get


def config_mismatches(config: dict, contract: dict) -> list[str]:
    """How an image's Config (podman image inspect) differs from its contract."""
    expected = {
        "User": standins.contract_user(contract),
        "Entrypoint": contract["entrypoint"],
        "Cmd": contract["cmd"],
        "WorkingDir": contract["workdir"],
    }
    actual = {
        "User": config.get("User") or "",
        "Entrypoint": config.get("Entrypoint") or [],
        "Cmd": config.get("Cmd") or [],
        "WorkingDir": config.get("WorkingDir") or "",
    }
    problems = [
        f"{field}: image {actual[field]!r}, contract {expected[field]!r}"
        for field in expected
        if actual[field] != expected[field]
    ]
    env = config.get("Env") or []
    problems += [
        f"Env: {key}={value} missing"
        for key, value in standins.contract_env(contract).items()
        if f"{key}={value}" not in env
    ]
    label = (config.get("Labels") or {}).get(STANDIN_LABEL, "")
    if standins.upstream_ref(contract) not in label:
        problems.append(f"label {STANDIN_LABEL} does not name {standins.upstream_ref(contract)}")
    return problems


def inspect_config(podman, ref: str) -> dict:
    (image,) = json.loads(podman.run("image", "inspect", ref).stdout)
    return image["Config"]


def run(podman, ref: str, *args: str, options: tuple[str, ...] = ()) -> str:
    result = podman.run(
        "run", "--rm", "--network=none", *options, ref, *args,
        timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"exit status {result.returncode}:\n{output[-3000:]}"
    return output


def test_every_contract_image_is_a_standin_or_excluded(contracts):
    assert set(standins.STANDINS).isdisjoint(standins.EXCLUDED)
    covered = set(standins.STANDINS) | set(standins.EXCLUDED)
    assert set(contracts) - covered == set(), "contract images with no stand-in, not EXCLUDED"
    assert covered - set(contracts) == set(), "stand-ins or EXCLUDED names of no contract image"
    assert all(reason.strip() for reason in standins.EXCLUDED.values())


@pytest.mark.parametrize("field", ["user", "entrypoint", "cmd", "workdir"])
def test_the_config_check_names_a_field_that_breaks_the_contract(contracts, field):
    # The check must see a stand-in built after a contract that changed since.
    contract = contracts["prometheus"]
    config = {
        "User": standins.contract_user(contract),
        "Entrypoint": contract["entrypoint"],
        "Cmd": contract["cmd"],
        "WorkingDir": contract["workdir"],
        "Labels": {STANDIN_LABEL: f"stand-in for {standins.upstream_ref(contract)}"},
    }
    assert config_mismatches(config, contract) == []
    broken = copy.deepcopy(contract)
    if field == "user":
        broken["user"]["dockerfile_user"] = "65533"
    else:
        broken[field] = "/elsewhere" if field == "workdir" else ["/bin/elsewhere"]
    (problem,) = config_mismatches(config, broken)
    assert problem.lower().startswith(field if field != "workdir" else "workingdir")


@pytest.mark.parametrize("name", NAMES)
def test_standin_config_is_the_contracts(podman, built, contracts, name):
    image = built(name)
    config = inspect_config(podman, image.ref)
    assert config_mismatches(config, contracts[name]) == []
    assert config["Labels"].get(standins.KEY_LABEL), "no cache key label"


@pytest.mark.parametrize("name", NAMES)
def test_standin_user_has_the_contracts_ids(podman, built, contracts, name):
    user = contracts[name]["user"]
    ids = run(podman, built(name).ref, "-c", "id -u; id -g", options=("--entrypoint", "sh"))
    uid, gid = ids.split()
    assert int(uid) == user["uid"]
    if user["gid"] is not None:
        assert int(gid) == user["gid"]


@pytest.mark.parametrize("name", NAMES)
def test_standin_process_prints_the_pinned_version(podman, built, contracts, name):
    standin = standins.STANDINS[name]
    program = ("--entrypoint", contracts[name]["entrypoint"][0]) if standin.program_only else ()
    output = run(podman, built(name).ref, *standin.version_args, options=program)
    if standin.unversioned:
        # It starts and answers, and it is the bootstrap's build of the pinned version
        # (standin.unversioned says why it cannot say so itself).
        assert standin.instead in output, output[-2000:]
        program = contracts[name]["entrypoint"][0]
        inside = run(podman, built(name).ref, program, options=("--entrypoint", "sha256sum"))
        pinned = hashlib.sha256(standin.pinned_build().read_bytes()).hexdigest()
        assert inside.split()[0] == pinned, f"{program} is not {standin.pinned_build()}"
        return
    assert standin.version_text in output, output[-2000:]


def test_elasticsearch_entrypoint_puts_the_password_in_the_keystore(podman, built):
    # As upstream's: with ELASTIC_PASSWORD set, "eswrapper" creates the keystore and adds
    # bootstrap.password before it starts the server (here only --version), as uid 1000.
    output = run(
        podman, built("elasticsearch").ref, "-c",
        "/usr/local/bin/docker-entrypoint.sh eswrapper --version && id -u "
        "&& elasticsearch-keystore list && stat -c '%u:%g %a' config/elasticsearch.keystore",
        options=("--entrypoint", "bash", "--env", "ELASTIC_PASSWORD=not-a-secret"),
    )  # fmt: skip
    assert f"Version: {standins.ES_VERSION}," in output, output[-2000:]
    assert "\nbootstrap.password\n" in output, output[-2000:]
    assert "\n1000\n" in output and "1000:0 " in output, output[-2000:]


def test_elasticsearch_standin_serves_a_green_single_node_cluster(podman, built, run_id):
    # The full server, as the image starts it (tini, the entrypoint, eswrapper) with
    # the image's own configuration: security auto-configured (HTTPS), the password of
    # `elastic` from ELASTIC_PASSWORD. About a minute on two cores.
    container = podman_support.start(
        podman, f"obs-stack-test-{run_id}-es-standin", built("elasticsearch").ref,
        ["--network=none"],
        {"ELASTIC_PASSWORD": "not-a-secret", "discovery.type": "single-node",
         "ES_JAVA_OPTS": "-Xms512m -Xmx512m"},
    )  # fmt: skip
    try:

        def health():
            container.alive()
            return json.loads(
                podman.run(
                    "exec", container.name, "curl", "-sfk", "-u", "elastic:not-a-secret",
                    "https://127.0.0.1:9200/_cluster/health",
                ).stdout
            )  # fmt: skip

        answer = poll_until(health, "the stand-in's cluster health", 240, 3, container.tail)
        assert answer["status"] == "green", answer
        assert answer["cluster_name"] == "docker-cluster"
        uid = podman.run("exec", container.name, "id", "-u").stdout.strip()
        assert uid == "1000"
        # The analysis stand-in plugin lets the native realm create its index: the setup
        # Job's first write (tests/support/es_standin_plugin).
        password = podman.run(
            "exec", container.name, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
            "-u", "elastic:not-a-secret", "-H", "Content-Type: application/json",
            "-d", '{"password": "another-not-secret"}',
            "https://127.0.0.1:9200/_security/user/kibana_system/_password",
        ).stdout  # fmt: skip
        assert password == "200", container.tail()
    finally:
        container.remove()
