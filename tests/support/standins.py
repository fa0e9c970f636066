"""Stand-ins for the upstream images the k8s/ render pins, built with podman FROM the
services' base image (a debootstrap of Debian bookworm) out of the binaries that
scripts/bootstrap.sh already builds, so that a real node (tests/support/real_node.py),
which reaches no registry, can run them under their upstream names.

Every stand-in takes its USER, ENTRYPOINT, CMD, WORKDIR and the ENV that the upstream
Dockerfile sets from its entry in tests/k8s/image_contracts.yaml, never from here: the
image tests then hold the contract against a running image (tests/images/
test_standins.py) as tests/k8s/test_image_contracts.py holds it against the render.
What each image owns besides (files, directories, uids) imitates the upstream
Dockerfile at the pinned tag; each recipe below names it. EXCLUDED says which contract
images have no stand-in, and why.

Each image carries the label io.obs-stack.standin (what it imitates, what it was built
from) and io.obs-stack.standin.key: a sha256 over its Containerfile and every file of
its build context. A build is skipped when podman already holds the image with that
key, so a warm run costs one `podman image inspect` (and the hashing) per image. In
podman's storage an image is named localhost/obs-stack-test/<name>-standin:<tag>, never
by its upstream name; only the node's containerd knows it by that.

Reads OBS_STACK_CACHE (through obs_tools.common.versions.cache_dir) for the binaries,
and, for Fluent Bit's source archive (its default configuration files), in the order of
scripts/bootstrap.sh: ../shared/vendor/ beside the repository, else OBS_FLUENT_BIT_SOURCE.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import (
    VERSIONS,
    cache_dir,
    fluent_bit_binary,
    jaeger_binary,
    jaeger_es_index_cleaner_binary,
    k8s_binary,
)

from .es_standin_plugin import PLUGIN_NAME, build_plugin
from .node_images import STANDIN_LABEL
from .podman import Podman

# Beside this file, as tests/k8s/test_image_contracts.py finds it.
CONTRACTS_FILE = Path(__file__).resolve().parents[1] / "k8s" / "image_contracts.yaml"
KEY_LABEL = "io.obs-stack.standin.key"
BUILD_TIMEOUT_S = 900
TOOL_TIMEOUT_S = 30
BOOTSTRAP_HINT = "run `scripts/bootstrap.sh all` and `scripts/bootstrap.sh k8s`"

# The contract images without a stand-in: the one place that says why.
EXCLUDED = {
    "kibana": (
        "no source we can build here: Kibana is a Node.js application whose distribution "
        "is built from the elastic/kibana tree (about 3 GB, not fetchable here) and ships "
        "its own bundled Node.js; no registry or package list we reach ships it"
    ),
    "grafana": (
        "no source we can build here: Grafana's server and its compiled web frontend are "
        "built from the grafana/grafana tree (about 3 GB, not fetchable here; the tag "
        "could not even be read); no registry or package list we reach ships it"
    ),
}

ES_VERSION = VERSIONS["ELASTICSEARCH_VERSION"]
ES_HOME = "/usr/share/elasticsearch"
# Debian's JDK: the Maven zip has none (the upstream image bundles its own).
ES_JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
EXPORTER_BINARY = Path("/usr/bin/prometheus-elasticsearch-exporter")


class MissingInput(FileNotFoundError):
    """A file a stand-in is built from is not there (the bootstrap has not made it)."""


def load_contracts() -> dict[str, dict]:
    return yaml.safe_load(CONTRACTS_FILE.read_text())["images"]


def upstream_ref(contract: dict) -> str:
    return f"{contract['image']}:{contract['tag']}"


def podman_ref(name: str, contract: dict) -> str:
    return f"localhost/obs-stack-test/{name}-standin:{contract['tag']}"


# --- what the contract says the image is -------------------------------------------------


def contract_user(contract: dict) -> str:
    """The image's Config.User: the Dockerfile's USER, its build argument expanded to
    the uid the contract gives; "" where the Dockerfile has no USER (root)."""
    user = contract["user"]
    written = user["dockerfile_user"]
    if written is None:
        return ""
    return str(user["uid"]) if "${" in written else written


def contract_env(contract: dict) -> dict[str, str]:
    """The ENV lines of the upstream Dockerfile that the contract quotes."""
    env = {}
    for entry in contract.get("env", []):
        evidence = entry.get("evidence", {})
        quote = evidence.get("quote", "") if isinstance(evidence, dict) else ""
        match = re.fullmatch(r"ENV (\w+)=(\S*)", quote)
        if evidence.get("source") == "dockerfile" and match and match[1] == entry["name"]:
            env[match[1]] = match[2]
    return env


def contract_config_lines(contract: dict) -> list[str]:
    lines = [f"ENV {key}={value}" for key, value in contract_env(contract).items()]
    lines += [f"WORKDIR {contract['workdir']}", f"ENTRYPOINT {json.dumps(contract['entrypoint'])}"]
    # No CMD line for an empty one: the upstream image has none (ENTRYPOINT already
    # clears the base's).
    if contract["cmd"]:
        lines.append(f"CMD {json.dumps(contract['cmd'])}")
    if user := contract_user(contract):
        lines.append(f"USER {user}")
    return lines


# --- build contexts ----------------------------------------------------------------------


def require(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise MissingInput(f"not built or downloaded: {', '.join(missing)}; {BOOTSTRAP_HINT}")


def place(source: Path, context: Path, name: str) -> None:
    """Put `source` into the build context, a hard link where the filesystem allows."""
    target = context / name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def ldd_check(*binaries: str) -> str:
    """A RUN line that fails the build when a binary misses a shared library."""
    names = " ".join(binaries)
    return (
        f"RUN for b in {names}; do if ldd \"$b\" 2>&1 | grep -q 'not found'; "
        'then ldd "$b"; exit 1; fi; done'
    )


def apt_install(packages: list[str]) -> str:
    return (
        "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends "
        f"{' '.join(packages)} >/dev/null && rm -rf /var/lib/apt/lists/*"
    )


def _owning_package(library: str) -> str:
    # Debian bookworm is merged-/usr: dpkg may know a library under /lib or /usr/lib.
    candidates = [library, os.path.realpath(library)]
    candidates += [
        p.removeprefix("/usr") if p.startswith("/usr/") else "/usr" + p for p in candidates
    ]
    for path in candidates:
        result = subprocess.run(
            ["dpkg", "-S", path], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S
        )
        if result.returncode == 0:
            return result.stdout.split(":", 1)[0]
    raise MissingInput(f"no Debian package owns {library}")


def runtime_packages(binary: Path) -> list[str]:
    """The Debian packages of the shared libraries `binary` loads on this host (the
    bootstrap built it against the host's bookworm libraries)."""
    result = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S
    )
    libraries = re.findall(r"=> (/\S+)", result.stdout)
    return sorted({_owning_package(lib) for lib in libraries})


def fluent_bit_source() -> Path:
    name = f"fluent-bit-{VERSIONS['FLUENT_BIT_VERSION'].removeprefix('v')}-src.tar.gz"
    vendored = REPO.parent / "shared" / "vendor" / name
    return (
        vendored if vendored.is_file() else Path(os.environ.get("OBS_FLUENT_BIT_SOURCE", vendored))
    )


def go_module(path: str, version: str) -> Path:
    """An unpacked module in the bootstrap's Go module cache."""
    return cache_dir() / "gomod" / f"{path}@{version}"


# --- one recipe per stand-in -------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """What goes between FROM and the contract's lines, and what the label says it was
    built from."""

    body: str
    built_from: str


def prometheus(context: Path) -> Recipe:
    # Upstream Dockerfile at v3.16.0 (the module v0.316.0): prometheus and promtool in
    # /bin, documentation/examples/prometheus.yml as the default config, /etc/prometheus
    # and /prometheus owned by nobody, /prometheus group-writable and a VOLUME.
    release = VERSIONS["PROMETHEUS_RELEASE"]
    module = go_module("github.com/prometheus/prometheus", VERSIONS["PROMETHEUS_MODULE_VERSION"])
    config = module / "documentation" / "examples" / "prometheus.yml"
    require(k8s_binary("prometheus"), k8s_binary("promtool"), config)
    place(k8s_binary("prometheus"), context, "prometheus")
    place(k8s_binary("promtool"), context, "promtool")
    place(config, context, "prometheus.yml")
    body = f"""COPY prometheus /bin/prometheus
COPY promtool /bin/promtool
COPY prometheus.yml /etc/prometheus/prometheus.yml
{ldd_check("/bin/prometheus", "/bin/promtool")}
RUN mkdir -p /prometheus && chown -R 65534:65534 /etc/prometheus /prometheus \\
 && chmod g+w /prometheus
VOLUME ["/prometheus"]"""
    return Recipe(
        body,
        f"{k8s_binary('prometheus')} and {k8s_binary('promtool')} (Prometheus {release}, "
        f"built by scripts/bootstrap.sh k8s from the Go module without the release's "
        f"builtinassets tag, so no web UI), {config}",
    )


def alertmanager(context: Path) -> Recipe:
    # Upstream Dockerfile at v0.34.x: amtool and alertmanager in /bin,
    # examples/ha/alertmanager.yml as the default config, then "mkdir -p /alertmanager
    # && chown -R nobody:nobody /etc/alertmanager /alertmanager && chmod -R g+w
    # /alertmanager", a VOLUME.
    version = VERSIONS["ALERTMANAGER_VERSION"]
    config = (
        go_module("github.com/prometheus/alertmanager", version)
        / "examples"
        / "ha"
        / "alertmanager.yml"
    )
    require(k8s_binary("alertmanager"), k8s_binary("amtool"), config)
    place(k8s_binary("alertmanager"), context, "alertmanager")
    place(k8s_binary("amtool"), context, "amtool")
    place(config, context, "alertmanager.yml")
    body = f"""COPY amtool /bin/amtool
COPY alertmanager /bin/alertmanager
COPY alertmanager.yml /etc/alertmanager/alertmanager.yml
{ldd_check("/bin/alertmanager", "/bin/amtool")}
RUN mkdir -p /alertmanager && chown -R 65534:65534 /etc/alertmanager /alertmanager \\
 && chmod -R g+w /alertmanager
VOLUME ["/alertmanager"]"""
    return Recipe(
        body,
        f"{k8s_binary('alertmanager')} and {k8s_binary('amtool')} (Alertmanager {version}, "
        f"built by scripts/bootstrap.sh k8s; its web UI a placeholder page, the module has "
        f"no npm-built UI), {config}",
    )


def kube_state_metrics(context: Path) -> Recipe:
    # Upstream: distroless static with the binary at /kube-state-metrics.
    binary = k8s_binary("kube-state-metrics")
    require(binary)
    place(binary, context, "kube-state-metrics")
    body = f"COPY kube-state-metrics /kube-state-metrics\n{ldd_check('/kube-state-metrics')}"
    return Recipe(
        body,
        f"{binary} (kube-state-metrics {VERSIONS['KUBE_STATE_METRICS_VERSION']}, built by "
        "scripts/bootstrap.sh k8s)",
    )


def jaeger(context: Path) -> Recipe:
    # Upstream cmd/jaeger/Dockerfile at v2.13.0: the binary and sampling-strategies.json
    # in /cmd/jaeger, VOLUME ["/tmp"]; ENV JAEGER_LISTEN_HOST comes from the contract.
    binary = jaeger_binary()
    module = go_module("github.com/jaegertracing/jaeger", VERSIONS["JAEGER_MODULE_VERSION"])
    strategies = module / "cmd" / "jaeger" / "sampling-strategies.json"
    require(binary, strategies)
    place(binary, context, "jaeger")
    place(strategies, context, "sampling-strategies.json")
    body = f"""COPY jaeger /cmd/jaeger/jaeger-linux
COPY sampling-strategies.json /cmd/jaeger/sampling-strategies.json
{ldd_check("/cmd/jaeger/jaeger-linux")}
VOLUME ["/tmp"]"""
    return Recipe(
        body,
        f"{binary} (Jaeger {VERSIONS['JAEGER_RELEASE']} = module "
        f"{VERSIONS['JAEGER_MODULE_VERSION']}, UI {VERSIONS['JAEGER_UI_VERSION']} embedded, "
        f"built by scripts/bootstrap.sh all), {strategies}",
    )


def jaeger_es_index_cleaner(context: Path) -> Recipe:
    # Upstream cmd/es-index-cleaner/Dockerfile at v1.76.0: the binary at
    # /go/bin/es-index-cleaner-linux on Jaeger's alpine base (ca-certificates).
    binary = jaeger_es_index_cleaner_binary()
    require(binary)
    place(binary, context, "es-index-cleaner")
    body = (
        "COPY es-index-cleaner /go/bin/es-index-cleaner-linux\n"
        f"{ldd_check('/go/bin/es-index-cleaner-linux')}"
    )
    return Recipe(
        body,
        f"{binary} (module {VERSIONS['JAEGER_MODULE_VERSION']}, built by scripts/bootstrap.sh all)",
    )


# The configuration files dockerfiles/Dockerfile of v4.2.8 copies into /fluent-bit/etc.
FLUENT_BIT_CONFIGS = (
    "fluent-bit.conf", "parsers.conf", "parsers_ambassador.conf", "parsers_java.conf",
    "parsers_extra.conf", "parsers_openstack.conf", "parsers_cinder.conf", "plugins.conf",
)  # fmt: skip


def fluent_bit(context: Path) -> Recipe:
    # Upstream dockerfiles/Dockerfile at v4.2.8: /fluent-bit/{bin,etc,log}, the default
    # configuration files and schema.json (`fluent-bit -J`) in etc/, on distroless
    # cc-debian13 with the libraries it links. Ours links the host's bookworm libraries,
    # installed here from Debian by the packages that own them on this host.
    binary, source = fluent_bit_binary(), fluent_bit_source()
    require(binary, source)
    place(binary, context, "fluent-bit")
    top = f"fluent-bit-{VERSIONS['FLUENT_BIT_VERSION'].removeprefix('v')}/conf/"
    wanted = {top + name: name for name in FLUENT_BIT_CONFIGS}
    (context / "etc").mkdir()
    # One pass over the compressed stream (it cannot seek back cheaply).
    with tarfile.open(source) as archive:
        for member in archive:
            if member.name in wanted:
                (context / "etc" / wanted[member.name]).write_bytes(
                    archive.extractfile(member).read()
                )
    if missing := set(FLUENT_BIT_CONFIGS) - {p.name for p in (context / "etc").iterdir()}:
        raise MissingInput(f"{source} has no conf/{', conf/'.join(sorted(missing))}")
    body = f"""{apt_install(runtime_packages(binary))}
COPY fluent-bit /fluent-bit/bin/fluent-bit
COPY etc/ /fluent-bit/etc/
{ldd_check("/fluent-bit/bin/fluent-bit")}
RUN mkdir -p /fluent-bit/log && /fluent-bit/bin/fluent-bit -J > /fluent-bit/etc/schema.json"""
    return Recipe(
        body,
        f"{binary} (Fluent Bit {VERSIONS['FLUENT_BIT_VERSION']}, built by scripts/bootstrap.sh "
        f"all), configuration files from {source}",
    )


def elasticsearch_exporter(context: Path) -> Recipe:
    # Upstream Dockerfile at v1.5.0: the binary at /bin/elasticsearch_exporter on
    # prometheus/busybox (glibc).
    require(EXPORTER_BINARY)
    place(EXPORTER_BINARY, context, "elasticsearch_exporter")
    body = (
        "COPY elasticsearch_exporter /bin/elasticsearch_exporter\n"
        f"{ldd_check('/bin/elasticsearch_exporter')}"
    )
    return Recipe(
        body,
        f"{EXPORTER_BINARY} (Debian prometheus-elasticsearch-exporter "
        f"{VERSIONS['ELASTICSEARCH_EXPORTER_DEB_VERSION']})",
    )


def elasticsearch_zip() -> Path:
    return cache_dir() / "dl" / f"elasticsearch-{ES_VERSION}.zip"


# elastic/dockerfiles v8.19.4 elasticsearch/config/elasticsearch.yml, as the image has it.
ES_DOCKER_YML = 'cluster.name: "docker-cluster"\nnetwork.host: 0.0.0.0\n'

# The image's config/log4j2.properties logs to the console (the distribution's, which
# writes files into logs/, is kept as log4j2.file.properties for ES_LOG_STYLE=file). Ours
# keeps the server and deprecation logs, both as ECS JSON lines on stdout.
ES_CONSOLE_LOG4J2 = """status = error
appender.rolling.type = Console
appender.rolling.name = rolling
appender.rolling.layout.type = ECSJsonLayout
appender.rolling.layout.dataset = elasticsearch.server
rootLogger.level = info
rootLogger.appenderRef.rolling.ref = rolling
appender.deprecation_rolling.type = Console
appender.deprecation_rolling.name = deprecation_rolling
appender.deprecation_rolling.layout.type = ECSJsonLayout
appender.deprecation_rolling.layout.dataset = deprecation.elasticsearch
appender.header_warning.type = HeaderWarningAppender
appender.header_warning.name = header_warning
logger.deprecation.name = org.elasticsearch.deprecation
logger.deprecation.level = WARN
logger.deprecation.appenderRef.deprecation_rolling.ref = deprecation_rolling
logger.deprecation.appenderRef.header_warning.ref = header_warning
logger.deprecation.additivity = false
"""

# What elastic/dockerfiles v8.19.4 elasticsearch/bin/docker-entrypoint.sh does, in our
# words: "eswrapper" (or a command named elasticsearch) starts the server after the
# keystore steps; anything else is exec'd as given.
ES_ENTRYPOINT = """#!/bin/bash
set -e
# Files Elasticsearch creates stay group-writable (the image's users share group 0).
umask 0002
if [[ "$1" == eswrapper || "$(basename "$1")" == elasticsearch ]]; then
  shift
else
  exec "$@"
fi
# NAME_FILE variables become NAME (the distribution's own helper).
source /usr/share/elasticsearch/bin/elasticsearch-env-from-file
if [[ -f bin/elasticsearch-users && -n "$ELASTIC_PASSWORD" ]]; then
  [[ -f /usr/share/elasticsearch/config/elasticsearch.keystore ]] || elasticsearch-keystore create
  if ! elasticsearch-keystore has-passwd --silent; then
    if ! elasticsearch-keystore list | grep -q '^bootstrap.password$'; then
      echo "$ELASTIC_PASSWORD" | elasticsearch-keystore add -x bootstrap.password
    fi
  elif ! echo "$KEYSTORE_PASSWORD" | elasticsearch-keystore list \\
      | grep -q '^bootstrap.password$'; then
    printf '%s\\n%s\\n' "$KEYSTORE_PASSWORD" "$ELASTIC_PASSWORD" \\
      | elasticsearch-keystore add -x bootstrap.password
  fi
fi
case "${ES_LOG_STYLE:-console}" in
  console) ;;
  file) cp -f /usr/share/elasticsearch/config/log4j2.file.properties \\
      /usr/share/elasticsearch/config/log4j2.properties ;;
  *) echo "ERROR: ES_LOG_STYLE set to [$ES_LOG_STYLE]. Expected [console] or [file]" >&2; exit 1 ;;
esac
extra=()
[[ -z "$ENROLLMENT_TOKEN" ]] || extra=(--enrollment-token "$ENROLLMENT_TOKEN")
# tini, the container's first process, forwards signals and reaps children.
exec /usr/share/elasticsearch/bin/elasticsearch "$@" "${extra[@]}" <<<"$KEYSTORE_PASSWORD"
"""


def elasticsearch(context: Path) -> Recipe:
    # elastic/dockerfiles v8.19.4 elasticsearch/Dockerfile, step by step where it
    # applies: the distribution at /usr/share/elasticsearch with ES_DISTRIBUTION_TYPE
    # docker, data/ made, the docker config files, directories 0555 and files 0444,
    # bin/* 0555, then bin config config/jvm.options.d data logs plugins 0775 and config
    # files 0664, all owned 0:0 but those folders (elasticsearch); user elasticsearch
    # uid 1000 of group 1000 and member of root; tini; ENV ELASTIC_CONTAINER, PATH,
    # SHELL; /etc/passwd group-writable; no setuid files. Not the same: Debian's JDK 17
    # (ES_JAVA_HOME) instead of the bundled one, Debian's tini 0.19.0.
    archive = elasticsearch_zip()
    require(archive)
    place(archive, context, "elasticsearch.zip")
    (context / "docker").mkdir()
    (context / "docker" / "elasticsearch.yml").write_text(ES_DOCKER_YML)
    (context / "docker" / "log4j2.properties").write_text(ES_CONSOLE_LOG4J2)
    (context / "docker-entrypoint.sh").write_text(ES_ENTRYPOINT)
    # The analysis components of the default distribution's analysis-common module that
    # the .security index needs (tests/support/es_standin_plugin): without them every
    # native-realm write, hence the setup Job, fails on this zip.
    plugin = build_plugin()
    shutil.copytree(plugin, context / "plugin")
    unpacked = f"/usr/share/elasticsearch-{ES_VERSION}"
    body = f"""RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \\
   openjdk-17-jre-headless tini curl bash ca-certificates >/dev/null \\
 && rm -rf /var/lib/apt/lists/* && test -x {ES_JAVA_HOME}/bin/java && test -x /bin/tini
RUN groupadd -g 1000 elasticsearch \\
 && useradd --uid 1000 --gid 1000 --home-dir {ES_HOME} --no-create-home elasticsearch \\
 && usermod -aG root elasticsearch
COPY elasticsearch.zip /tmp/elasticsearch.zip
COPY docker/ /tmp/docker/
COPY plugin/ /tmp/plugin/
RUN python3 -m zipfile -e /tmp/elasticsearch.zip /usr/share && rm /tmp/elasticsearch.zip \\
 && mv {unpacked} {ES_HOME} && cd {ES_HOME} \\
 && grep -q '^ES_DISTRIBUTION_TYPE=' bin/elasticsearch-env \\
 && sed -i -e 's/^ES_DISTRIBUTION_TYPE=.*/ES_DISTRIBUTION_TYPE=docker/' bin/elasticsearch-env \\
 && mkdir -p data logs plugins config/jvm.options.d \\
 && mv /tmp/plugin plugins/{PLUGIN_NAME} \\
 && mv config/log4j2.properties config/log4j2.file.properties \\
 && mv /tmp/docker/elasticsearch.yml /tmp/docker/log4j2.properties config/ && rmdir /tmp/docker \\
 && find . -type d -exec chmod 0555 {{}} + && find . -type f -exec chmod 0444 {{}} + \\
 && chmod 0555 bin/* \\
 && chmod 0775 bin config config/jvm.options.d data logs plugins \\
 && find config -type f -exec chmod 0664 {{}} + \\
 && chown -R 0:0 . && chown 1000 bin config config/jvm.options.d data logs plugins \\
 && chmod 0775 .
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0555 /usr/local/bin/docker-entrypoint.sh && chmod g=u /etc/passwd \\
 && find / -xdev -perm -4000 -exec chmod ug-s {{}} +
ENV ELASTIC_CONTAINER=true PATH={ES_HOME}/bin:$PATH SHELL=/bin/bash ES_JAVA_HOME={ES_JAVA_HOME}"""
    return Recipe(
        body,
        f"{archive} (Maven Central org.elasticsearch.distribution.integ-test-zip "
        f"{ES_VERSION}; it lacks most of the default distribution: its only modules are "
        f"{', '.join(es_modules(archive))}, so no rest-root (GET / answers 405), no "
        "analysis-common, no ingest or ML; no bundled JDK), the plugin "
        f"{PLUGIN_NAME} (tests/support/es_standin_plugin: pattern_capture, unique and "
        "uax_url_email, which the .security index needs), Debian openjdk-17-jre-headless "
        "and tini, an entrypoint imitating elastic/dockerfiles v8.19.4 "
        "elasticsearch/bin/docker-entrypoint.sh",
    )


def es_modules(archive: Path) -> list[str]:
    pattern = re.compile(rf"elasticsearch-{re.escape(ES_VERSION)}/modules/([^/]+)/")
    with zipfile.ZipFile(archive) as zipped:
        return sorted({m[1] for name in zipped.namelist() if (m := pattern.match(name))})


def mailpit(context: Path) -> Recipe:
    # Written by another module: it places Mailpit's server and returns the lines after
    # FROM; the contract's lines are added here as for every image.
    try:
        from .mailpit_standin import prepare
    except ImportError as error:
        raise MissingInput(f"tests/support/mailpit_standin.py is not there yet: {error}") from None
    body = prepare(context)
    files = sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file())
    return Recipe(
        body.strip("\n"),
        "tests/support/mailpit_standin.py (a Python imitation of Mailpit's SMTP and API, "
        f"run by Debian's python3 with python3-aiosmtpd; context files: {', '.join(files)})",
    )


# One recipe per contract image that has a stand-in, with the version flag of its
# process and what it must print (the pinned version of scripts/versions.env).
@dataclass(frozen=True)
class Standin:
    name: str
    recipe: Callable[[Path], Recipe]
    version_args: tuple[str, ...]
    version_text: str
    # Why the process cannot print its version, where it cannot, and what it prints
    # instead: the test holds it to that, and the image's binary to the bootstrap's
    # build of the pinned version (pinned_build: its file name carries the version).
    unversioned: str = ""
    instead: str = ""
    pinned_build: Callable[[], Path] | None = None
    # Run the entrypoint's program without the flags the ENTRYPOINT adds (kube-state-
    # metrics: `version` is a subcommand, refused after --port=8080).
    program_only: bool = False


def _bare(key: str) -> str:
    """A pinned version without its "v" and any Debian revision: 1.5.0 of 1.5.0-1+b3."""
    return VERSIONS[key].removeprefix("v").split("-")[0]


# scripts/bootstrap.sh builds both Jaeger binaries with `go build` and no -ldflags, so
# internal/version's gitVersion is empty (`jaeger version` prints {"gitVersion":""}; the
# build info says "(devel)" for the main module). Only the binaries' file names carry it.
JAEGER_UNVERSIONED = (
    "built by scripts/bootstrap.sh without the release's -ldflags "
    "(github.com/jaegertracing/jaeger/internal/version), so no version is compiled in"
)

STANDINS = {
    s.name: s
    for s in (
        Standin("elasticsearch", elasticsearch, ("elasticsearch", "--version"),
                f"Version: {ES_VERSION},"),
        Standin("prometheus", prometheus, ("--version",),
                f"version {_bare('PROMETHEUS_RELEASE')} "),
        Standin("alertmanager", alertmanager, ("--version",),
                f"version {_bare('ALERTMANAGER_VERSION')} "),
        Standin("kube-state-metrics", kube_state_metrics, ("version",),
                f"version {_bare('KUBE_STATE_METRICS_VERSION')} ", program_only=True),
        Standin("jaeger", jaeger, ("version",), VERSIONS["JAEGER_RELEASE"],
                unversioned=JAEGER_UNVERSIONED, instead='"gitVersion":""',
                pinned_build=jaeger_binary),
        # It has no version command or flag at all: its help is all it prints.
        Standin("jaeger-es-index-cleaner", jaeger_es_index_cleaner, ("--help",),
                VERSIONS["JAEGER_MODULE_VERSION"],
                unversioned="no version command or flag, and " + JAEGER_UNVERSIONED,
                instead="jaeger-es-index-cleaner NUM_OF_DAYS http://HOSTNAME:PORT",
                pinned_build=jaeger_es_index_cleaner_binary),
        Standin("fluent-bit", fluent_bit, ("--version",),
                f"Fluent Bit {VERSIONS['FLUENT_BIT_VERSION']}"),
        Standin("elasticsearch-exporter", elasticsearch_exporter, ("--version",),
                f"version {_bare('ELASTICSEARCH_EXPORTER_DEB_VERSION')} "),
        # No versions.env entry: Mailpit's stand-in is ours; it reports the contract's tag.
        Standin("mailpit", mailpit, ("version",), f"mailpit {load_contracts()['mailpit']['tag']} "),
    )
}  # fmt: skip


# --- building ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    name: str
    ref: str  # in podman's storage
    upstream: str  # what the node's containerd calls it
    seconds: float
    cached: bool  # podman already had it with the same key


def context_key(containerfile: str, context: Path) -> str:
    digest = hashlib.sha256(containerfile.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file() and p.name != "Containerfile"):
        file_digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                file_digest.update(chunk)
        digest.update(f"\n{path.relative_to(context)} {file_digest.hexdigest()}".encode())
    return digest.hexdigest()


def containerfile(base: str, name: str, contract: dict, recipe: Recipe) -> str:
    label = f"stand-in for {upstream_ref(contract)}, FROM {base}; built from {recipe.built_from}"
    lines = [f"FROM {base}", recipe.body, f"LABEL {STANDIN_LABEL}={json.dumps(label)}"]
    return "\n".join(lines + contract_config_lines(contract)) + "\n"


def build(podman: Podman, base: str, name: str, contracts: dict | None = None) -> Built:
    """Build the stand-in `name` unless podman holds it with the same key."""
    contract = (contracts or load_contracts())[name]
    ref = podman_ref(name, contract)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"standin-{name}-") as directory:
        context = Path(directory)
        text = containerfile(base, name, contract, STANDINS[name].recipe(context))
        key = context_key(text, context)
        held = podman.run("image", "inspect", "--format", f'{{{{index .Labels "{KEY_LABEL}"}}}}',
                          ref, check=False)  # fmt: skip
        cached = held.returncode == 0 and held.stdout.strip() == key
        if not cached:
            (context / "Containerfile").write_text(f"{text}LABEL {KEY_LABEL}={key}\n")
            podman.run(
                "build", "--pull=never", "--layers", "--network=host", "--tag", ref,
                "--file", str(context / "Containerfile"), str(context), timeout=BUILD_TIMEOUT_S,
            )  # fmt: skip
    return Built(name, ref, upstream_ref(contract), time.monotonic() - start, cached)


def build_all(podman: Podman, base: str) -> dict[str, Built]:
    """Every stand-in, one after the other (builds are heavy; the machine may be small)."""
    contracts = load_contracts()
    return {name: build(podman, base, name, contracts) for name in STANDINS}
