"""The k8s/ render held against the image contracts of tests/k8s/image_contracts.yaml: what
each upstream image is, as read in its upstream files at the pinned tag (issue #15, item 5).

For every container and init container that runs a contracted image:
- writes: every path the entrypoint and the process write is on a writable volume
  (emptyDir, PVC, hostPath; the mount not readOnly) when the root filesystem is read-only,
  or always where the image's own files do not let its USER write there;
- sizes: every emptyDir with a sizeLimit under such paths holds the sum of what is written
  there (sizes that follow a flag, the Prometheus config or the JVM options are computed
  from the render; an unbounded write on a size-limited emptyDir is a problem);
- user: runAsNonRoot comes with a numeric, non-zero runAsUser unless the image's USER is
  already one, and runAsUser is the uid the image's files are owned by where it expects one;
- probes: every httpGet/tcpSocket/grpc/exec probe targets a listed endpoint (named ports
  resolved), and no probe calls an endpoint that needs credentials without giving them;
- flags: every flag passed is one the contract verified for that version (and values of
  --enable-feature are valid ones); no deprecated flag is passed;
- env: every variable set is one the image reads, or one our mounted configuration files
  (ConfigMaps) use through the image's own substitution (${VAR}, $VAR, ${env:VAR}), or one
  the container's command, args or other variables use as $(VAR).
Plus: every upstream image of the render has a contract and every contract a pinned image.

Unverified facts (marked `unverified:` in the contracts) are used conservatively: a size
that is only an estimate is still the bound the sizeLimit must hold; a USER not read at the
tag requires an explicit numeric runAsUser; every unverified mark must give its reason.

Each check returns a list of problems, one sentence each naming the workload and container,
and is shown to fail on a broken-on-purpose copy of the render. Reads no environment
variables (the render's kubectl comes from obs_tools.common.versions, which reads OBS_STACK_CACHE).
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.k8s.render import containers, find, ident, pod_spec, split_image, workloads

CONTRACTS_FILE = Path(__file__).with_name("image_contracts.yaml")
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def load_contracts() -> dict[str, dict]:
    return yaml.safe_load(CONTRACTS_FILE.read_text())["images"]


CONTRACTS = load_contracts()


@dataclass(frozen=True)
class Use:
    """One container of the render that runs a contracted image."""

    docs: list[dict]
    workload: dict
    container: dict
    contract: dict

    @property
    def owner(self) -> str:
        return f"{ident(self.workload)} container {self.container['name']}"

    @property
    def spec(self) -> dict:
        return pod_spec(self.workload)


def is_upstream(image: str) -> bool:
    """Images with a registry or namespace are upstream; bare names (obs-backend) are ours."""
    return "/" in split_image(image)[0]


def contract_for(image: str, contracts: dict[str, dict]) -> dict | None:
    repository, _ = split_image(image)
    return next((c for c in contracts.values() if c["image"] == repository), None)


def uses(docs: list[dict], contracts: dict[str, dict], name: str) -> list[Use]:
    found = []
    for workload in workloads(docs):
        for container in containers(pod_spec(workload)):
            contract = contract_for(container["image"], contracts)
            if contract is contracts[name]:
                found.append(Use(docs, workload, container, contract))
    return found


# --- coverage ---------------------------------------------------------------------------


def check_coverage(docs: list[dict], contracts: dict[str, dict]) -> list[str]:
    """Every upstream image has a contract of the same tag; every contract is used."""
    problems, used = [], set()
    for workload in workloads(docs):
        for container in containers(pod_spec(workload)):
            image = container["image"]
            if not is_upstream(image):
                continue
            contract = contract_for(image, contracts)
            owner = f"{ident(workload)} container {container['name']}"
            if contract is None:
                problems.append(f"{owner}: image {image} has no contract")
                continue
            used.add(contract["image"])
            if split_image(image)[1] != str(contract["tag"]):
                problems.append(
                    f"{owner}: image {image} is not the contract's tag {contract['tag']}"
                )
    for name, contract in contracts.items():
        if contract["image"] not in used:
            problems.append(f"contract {name}: no container runs {contract['image']} (stale)")
    return problems


# --- volumes ----------------------------------------------------------------------------


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def mount_for(use: Use, path: str) -> dict | None:
    """The volumeMount whose mountPath holds `path` (the deepest one); a subPath mount
    holds only its own path."""
    candidates = [
        m
        for m in use.container.get("volumeMounts", [])
        if (path == m["mountPath"]) or (not m.get("subPath") and under(path, m["mountPath"]))
    ]
    return max(candidates, key=lambda m: len(m["mountPath"]), default=None)


def volume(use: Use, name: str) -> dict:
    for v in use.spec.get("volumes", []):
        if v["name"] == name:
            return v
    for claim in use.workload["spec"].get("volumeClaimTemplates", []):
        if claim["metadata"]["name"] == name:
            return {"name": name, "persistentVolumeClaim": {"claimName": name}}
    raise KeyError(f"{use.owner}: no volume {name}")


def writable(use: Use, mount: dict | None) -> bool:
    if mount is None or mount.get("readOnly"):
        return False
    source = volume(use, mount["name"])
    return any(k in source for k in ("emptyDir", "persistentVolumeClaim", "hostPath"))


def read_only_root(use: Use) -> bool:
    return bool(use.container.get("securityContext", {}).get("readOnlyRootFilesystem"))


def runs_process(use: Use) -> bool:
    """The container runs the image's own process (its entrypoint, or a command the
    contract names), not another program of the image (bash on a script of ours)."""
    command = use.container.get("command")
    return not command or command[0] in use.contract.get("process_commands", [])


# --- what is written: paths and sizes, resolved against the render ---------------------------

UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(text: str) -> int:
    """1GB / 64m / 512Mi / 2Gi / 1024: powers of two (Prometheus' Base2Bytes, the JVM's
    sizes, Kubernetes' binary suffixes; a decimal Kubernetes suffix counts the same, which
    only makes a limit look larger by under 10%)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B?)?", str(text).strip(), re.I)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match[1]) * UNITS[match[2].upper()])


def arguments(use: Use) -> list[str]:
    return [*use.container.get("command", []), *use.container.get("args", [])]


def flag_value(use: Use, flag: str) -> str | None:
    values = [a.split("=", 1)[1] for a in arguments(use) if a.startswith(flag + "=")]
    return values[-1] if values else None


def env_value(use: Use, name: str) -> str | None:
    values = [e.get("value") for e in use.container.get("env", []) if e["name"] == name]
    return values[-1] if values else None


def configmap_files(use: Use, container: dict | None = None) -> dict[str, str]:
    """Path in the container -> text, for every ConfigMap file mounted in `container`
    (default: the use's container)."""
    files = {}
    for mount in (container or use.container).get("volumeMounts", []):
        source = volume(use, mount["name"])
        name = source.get("configMap", {}).get("name")
        if not name:
            continue
        data = find(use.docs, "ConfigMap", name, use.workload["metadata"]["namespace"])["data"]
        if mount.get("subPath"):
            files[mount["mountPath"]] = data.get(mount["subPath"], "")
        else:
            for key, text in data.items():
                files[posixpath.join(mount["mountPath"], key)] = text
    return files


def config_value(use: Use, size_from: dict) -> str | None:
    """A key of the YAML file that a flag names (Prometheus' storage.tsdb.retention.size)."""
    path = flag_value(use, size_from["config_flag"])
    text = configmap_files(use).get(path or "")
    node = yaml.safe_load(text) if text else None
    for key in size_from["config_key"]:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def sized(use: Use, write: dict) -> int | None:
    size_from = write.get("size_from")
    if not size_from:
        return write.get("max_bytes")
    value = flag_value(use, size_from["flag"]) or config_value(use, size_from)
    return int(parse_bytes(value) * size_from.get("factor", 1)) if value else None


def jvm_options(use: Use) -> list[str]:
    """The image's jvm.options lines, then every *.options file of a ConfigMap mounted in
    the pod (the jvm.options.d files the init container copies), then ES_JAVA_OPTS."""
    options = list(use.contract["jvm"]["defaults"])
    for container in containers(use.spec):
        for path, text in sorted(configmap_files(use, container).items()):
            if path.endswith(".options"):
                options += [line.strip() for line in text.splitlines()]
    options += (env_value(use, "ES_JAVA_OPTS") or "").split()
    return [o for o in options if o and not o.startswith("#")]


def gc_log_writes(options: list[str]) -> dict[str, int | None]:
    """File -> bytes of every -Xlog file output: (filecount + 1) x filesize, None when
    either is missing. A later -Xlog naming the same file keeps the first one's options
    (the JVM ignores new options for an existing output); -Xlog:disable drops them all."""
    outputs: dict[str, int | None] = {}
    for option in options:
        if option == "-Xlog:disable":
            outputs.clear()
        elif option.startswith("-Xlog:") and ":file=" in option:
            parts = option.split(":")
            path = parts[2].removeprefix("file=")
            settings = dict(kv.split("=") for kv in parts[4].split(",")) if len(parts) > 4 else {}
            count, size = settings.get("filecount"), settings.get("filesize")
            if path not in outputs:
                outputs[path] = (int(count) + 1) * parse_bytes(size) if count and size else None
    return outputs


def last_option(options: list[str], prefix: str) -> str | None:
    values = [o.removeprefix(prefix) for o in options if o.startswith(prefix)]
    return values[-1] if values else None


def heap_dump_writes(options: list[str]) -> dict[str, int | None]:
    """Where a heap dump on OutOfMemoryError goes (HeapDumpPath: a directory, or a .hprof
    file; default the working directory) -> the heap's maximum (-Xmx; None if unset)."""
    switches = [o for o in options if o.endswith("HeapDumpOnOutOfMemoryError")]
    if not switches or switches[-1] != "-XX:+HeapDumpOnOutOfMemoryError":
        return {}
    target = last_option(options, "-XX:HeapDumpPath=") or "."
    heap = last_option(options, "-Xmx")
    file = target if target.endswith(".hprof") else posixpath.join(target, "java_pid.hprof")
    return {file: parse_bytes(heap) if heap else None}


def jvm_writes(use: Use, write: dict) -> list[tuple[str, int | None]]:
    """(directory, bytes) of what the JVM writes for the contract's `jvm_output` entry,
    relative paths resolved against the JVM's working directory."""
    options, cwd = jvm_options(use), use.contract["jvm"]["working_dir"]
    if write["jvm_output"] == "gc_log":
        files = gc_log_writes(options)
    elif write["jvm_output"] == "heap_dump":
        files = heap_dump_writes(options)
    else:
        error_file = last_option(options, "-XX:ErrorFile=") or "hs_err_pid.log"
        files = {error_file: write["max_bytes"]}
    return [
        (posixpath.dirname(posixpath.normpath(posixpath.join(cwd, f))), size)
        for f, size in files.items()
    ]


def writes(use: Use) -> list[tuple[str, int | None, dict]]:
    """(path, max bytes or None for unbounded, the contract's entry) of what the process
    writes, with the render's flags and JVM options applied."""
    found = []
    for write in use.contract.get("writes", []):
        if write.get("jvm_output"):
            found += [(path, size, write) for path, size in jvm_writes(use, write)]
            continue
        path = flag_value(use, write["path_flag"]) if write.get("path_flag") else None
        found.append((path or write["path"], sized(use, write), write))
    return found


# --- the checks ---------------------------------------------------------------------------


def check_writes(use: Use) -> list[str]:
    """Every written path is on a writable volume where it has to be."""
    if not runs_process(use):
        return []
    problems = []
    for path, _, write in writes(use):
        needs_volume = read_only_root(use) or not write.get("image_writable")
        if not needs_volume:
            continue
        mount = mount_for(use, path)
        if not writable(use, mount):
            where = f"volume {mount['name']}" if mount else "the image's read-only files"
            problems.append(
                f"{use.owner}: writes {path} ({write['what'].split(',')[0].strip()}), which is "
                f"on {where}, not on a writable volume"
            )
    return problems


def check_sizes(use: Use) -> list[str]:
    """Every size-limited emptyDir holds the sum of what the process writes there."""
    if not runs_process(use):
        return []
    demand: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
    for path, size, _ in writes(use):
        mount = mount_for(use, path)
        if mount is not None:
            demand[mount["name"]].append((path, size))
    problems = []
    for name, items in demand.items():
        limit = volume(use, name).get("emptyDir", {}).get("sizeLimit")
        if limit is None:
            continue
        sizes = [size for _, size in items]
        total = None if None in sizes else sum(sizes)
        if total is None or total > parse_bytes(limit):
            shown = "unbounded" if total is None else f"{total} bytes"
            problems.append(
                f"{use.owner}: emptyDir {name} (sizeLimit {limit}) gets "
                f"{', '.join(sorted({p for p, _ in items}))}: {shown}, more than its sizeLimit"
            )
    return problems


def security_context(use: Use) -> dict:
    return {**use.spec.get("securityContext", {}), **use.container.get("securityContext", {})}


def check_user(use: Use) -> list[str]:
    """runAsNonRoot needs a numeric runAsUser unless the image's USER is a non-zero uid;
    runAsUser is the uid the image's files are owned by where it expects one."""
    user, context = use.contract["user"], security_context(use)
    run_as = context.get("runAsUser")
    declared = str(user.get("dockerfile_user") or "0").split(":")[0]
    numeric_user = declared.isdigit() and declared != "0" and not user.get("unverified")
    problems = []
    if (
        context.get("runAsNonRoot")
        and not numeric_user
        and (not isinstance(run_as, int) or isinstance(run_as, bool) or run_as == 0)
    ):
        problems.append(
            f"{use.owner}: runAsNonRoot with the image's USER {user.get('dockerfile_user')!r} "
            f"needs a numeric non-zero runAsUser (is {run_as!r})"
        )
    expected = user.get("expects_uid")
    if expected is not None and run_as is not None and run_as != expected:
        problems.append(
            f"{use.owner}: runAsUser {run_as!r} is not the uid {expected} the image's files "
            "are owned by"
        )
    return problems


def port_number(use: Use, port: int | str) -> int | None:
    if isinstance(port, int):
        return port
    declared = {p.get("name"): p["containerPort"] for p in use.container.get("ports", [])}
    return declared.get(port)


LOCAL_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)(/[^\s'\"?]*)?")
CREDENTIALS = re.compile(r"(?:\s-u\s|--user\b|\s-K\s|--config\b|Authorization)")


def probe_targets(use: Use, probe: dict) -> list[tuple[int | None, str | None, bool]]:
    """(port, path or None for a connection, credentials given) of what a probe calls."""
    if "httpGet" in probe:
        get = probe["httpGet"]
        headers = {h["name"].lower() for h in get.get("httpHeaders", [])}
        path = (get.get("path") or "/").split("?")[0]
        return [(port_number(use, get["port"]), path, "authorization" in headers)]
    for kind in ("tcpSocket", "grpc"):
        if kind in probe:
            return [(port_number(use, probe[kind]["port"]), None, False)]
    command = " ".join(probe.get("exec", {}).get("command", []))
    given = bool(CREDENTIALS.search(command))
    return [(int(port), path or "/", given) for port, path in LOCAL_URL.findall(command)]


def check_probes(use: Use) -> list[str]:
    """Every probe calls a listed endpoint, with credentials where it needs them."""
    endpoints = use.contract["endpoints"]
    problems = []
    for kind in PROBES:
        probe = use.container.get(kind)
        if not probe:
            continue
        targets = probe_targets(use, probe)
        if not targets:
            problems.append(f"{use.owner}: {kind} calls no endpoint on localhost")
        for port, path, given in targets:
            listed = [e for e in endpoints if e["port"] == port and e["path"] == path]
            if path is None:
                listed = [e for e in endpoints if e["port"] == port]
            if not listed:
                problems.append(
                    f"{use.owner}: {kind} targets port {port} path {path}, which is not an "
                    f"endpoint of the image ({', '.join(describe(e) for e in endpoints)})"
                )
            elif path is not None and listed[0]["auth"] and not given:
                problems.append(
                    f"{use.owner}: {kind} calls {port}{path}, which needs credentials, without any"
                )
    return problems


def describe(endpoint: dict) -> str:
    return f"{endpoint['port']}{endpoint['path'] or ' (tcp)'}"


def passed_flags(use: Use) -> tuple[list[str], dict[str, dict]]:
    """(flags given, the flags known for the program that gets them)."""
    command = use.container.get("command", [])
    if runs_process(use):
        argv = [*command[1:], *use.container.get("args", [])]
        known = {f["name"]: f for f in use.contract.get("flags", [])}
        return [a for a in argv if a.startswith("-")], known
    program = use.contract.get("other_programs", {}).get(posixpath.basename(command[0]))
    leading = []
    for argument in command[1:]:
        if not argument.startswith("-"):
            break
        leading.append(argument)
    return leading, {f: {"name": f} for f in (program or {}).get("flags", [])}


def check_flags(use: Use) -> list[str]:
    """Every flag passed is known to that version, --enable-feature values too."""
    command = use.container.get("command", [])
    if command and not runs_process(use):
        program = posixpath.basename(command[0])
        if program not in use.contract.get("other_programs", {}):
            return [f"{use.owner}: runs {command[0]}, neither the image's process nor a "
                    "program the contract lists"]  # fmt: skip
    given, known = passed_flags(use)
    problems = []
    for argument in given:
        name, _, value = argument.partition("=")
        flag = known.get(name)
        if flag is None:
            problems.append(f"{use.owner}: flag {name} is not one the contract verified")
            continue
        unknown = [v for v in value.split(",") if flag.get("values") and v not in flag["values"]]
        if unknown:
            problems.append(f"{use.owner}: {name} value(s) {unknown} are not valid at this tag")
    return problems


def check_deprecated_flags(use: Use) -> list[str]:
    given, known = passed_flags(use)
    return [
        f"{use.owner}: flag {name} is deprecated at this tag ({known[name]['deprecated']})"
        for name in (a.partition("=")[0] for a in given)
        if known.get(name, {}).get("deprecated")
    ]


SUBSTITUTION = {
    "shell": r"\$(?:\{{{name}(?:[:?+-][^}}]*)?\}}|{name}\b)",
    "braces": r"\$\{{{name}(?::-[^}}]*)?\}}",
    "env-provider": r"\$\{{env:{name}(?::-[^}}]*)?\}}",
}


def consumed_by_our_files(use: Use, name: str) -> bool:
    """A variable our mounted ConfigMap files use through the image's own substitution,
    or that the container's command, args or env use as $(VAR) (Kubernetes expansion)."""
    texts = list(configmap_files(use).values())
    patterns = [
        SUBSTITUTION[s["syntax"]].format(name=re.escape(name))
        for s in use.contract.get("substitution", [])
    ]
    if any(re.search(p, text) for p in patterns for text in texts):
        return True
    expanded = [*arguments(use), *(e.get("value") or "" for e in use.container.get("env", []))]
    return any(f"$({name})" in text for text in expanded)


def check_env(use: Use) -> list[str]:
    """Every variable set is read by the image or used by our mounted files."""
    known = {e["name"] for e in use.contract.get("env", [])}
    return [
        f"{use.owner}: env {e['name']} is read neither by the image (contract) nor by a "
        "mounted file of ours"
        for e in use.container.get("env", [])
        if e["name"] not in known and not consumed_by_our_files(use, e["name"])
    ]


def unverified_marks(node, where: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "unverified":
                yield where, value
            yield from unverified_marks(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from unverified_marks(value, f"{where}[{index}]")


# --- tests ----------------------------------------------------------------------------------

CHECKS: dict[str, Callable[[Use], list[str]]] = {
    "writes": check_writes,
    "sizes": check_sizes,
    "user": check_user,
    "probes": check_probes,
    "flags": check_flags,
    "deprecated-flags": check_deprecated_flags,
    "env": check_env,
}

# Render defects found by a contract, each (check, image) with its reason, as strict
# xfails until fixed. None open: Elasticsearch's heap dump on OutOfMemoryError went to
# the 256Mi logs emptyDir until files/elasticsearch-gc.options pointed it at data/.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


def cases() -> list:
    params = []
    for check in CHECKS:
        for name in CONTRACTS:
            reason = KNOWN_DEFECTS.get((check, name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(check, name, id=f"{check}-{name}", marks=marks))
    return params


@pytest.fixture
def mutable(render_docs) -> list[dict]:
    """A deep copy of the render, to break on purpose."""
    return copy.deepcopy(render_docs)


def problems_of(docs: list[dict], check: str, name: str) -> list[str]:
    return [p for use in uses(docs, CONTRACTS, name) for p in CHECKS[check](use)]


def test_every_upstream_image_has_a_contract_of_its_tag_and_no_contract_is_stale(render_docs):
    assert check_coverage(render_docs, CONTRACTS) == []


@pytest.mark.parametrize(("check", "name"), cases())
def test_the_render_keeps_the_image_contract(render_docs, check, name):
    assert uses(render_docs, CONTRACTS, name), f"no container runs {name}"
    assert problems_of(render_docs, check, name) == []


def test_every_contract_cites_its_sources_and_every_unverified_mark_says_why():
    for name, contract in CONTRACTS.items():
        assert contract["sources"], name
        for source in contract["sources"].values():
            assert {"repo", "tag", "path"} <= set(source), (name, source)
        for where, reason in unverified_marks(contract, name):
            assert reason and (isinstance(reason, str) or all(reason)), where


# --- broken on purpose: each check reports what it must ---------------------------------------


def workload(docs: list[dict], kind: str, name: str) -> dict:
    return find(docs, kind, name, "obs-monitoring")


def container(docs: list[dict], kind: str, name: str, container_name: str) -> dict:
    spec = pod_spec(workload(docs, kind, name))
    return next(c for c in containers(spec) if c["name"] == container_name)


def test_a_stale_or_missing_contract_is_reported(mutable):
    container(mutable, "Deployment", "grafana", "grafana")["image"] = (
        "docker.io/grafana/grafana:9.9.9"
    )
    problems = check_coverage(mutable, CONTRACTS)
    assert any("grafana/grafana:9.9.9 is not the contract's tag" in p for p in problems)
    container(mutable, "Deployment", "mailcatcher", "mailpit")["image"] = "docker.io/x/smtp:1"
    problems = check_coverage(mutable, CONTRACTS)
    assert any("docker.io/x/smtp:1 has no contract" in p for p in problems)
    assert any("contract mailpit: no container runs" in p for p in problems)


def test_a_written_path_without_a_writable_volume_is_reported(mutable):
    grafana = container(mutable, "Deployment", "grafana", "grafana")
    grafana["volumeMounts"] = [m for m in grafana["volumeMounts"] if m["name"] != "data"]
    assert any("writes /var/lib/grafana" in p for p in problems_of(mutable, "writes", "grafana"))
    prometheus = container(mutable, "Deployment", "prometheus", "prometheus")
    next(m for m in prometheus["volumeMounts"] if m["name"] == "data")["readOnly"] = True
    assert any("writes /prometheus" in p for p in problems_of(mutable, "writes", "prometheus"))


def test_a_moved_storage_path_is_followed(mutable):
    alertmanager = container(mutable, "Deployment", "alertmanager", "alertmanager")
    alertmanager["args"] = [
        "--storage.path=/var/am" if a.startswith("--storage.path") else a
        for a in alertmanager["args"]
    ]
    assert any("writes /var/am" in p for p in problems_of(mutable, "writes", "alertmanager"))


def test_a_shrunk_size_limit_is_reported(mutable):
    spec = pod_spec(workload(mutable, "Deployment", "prometheus"))
    next(v for v in spec["volumes"] if v["name"] == "data")["emptyDir"]["sizeLimit"] = "512Mi"
    problems = problems_of(mutable, "sizes", "prometheus")
    assert any("emptyDir data (sizeLimit 512Mi)" in p for p in problems), problems
    spec = pod_spec(workload(mutable, "Deployment", "mailcatcher"))
    next(v for v in spec["volumes"] if v["name"] == "tmp")["emptyDir"]["sizeLimit"] = "1Mi"
    assert any(
        "emptyDir tmp (sizeLimit 1Mi)" in p for p in problems_of(mutable, "sizes", "mailpit")
    )


def test_prometheus_without_a_size_retention_is_unbounded(mutable):
    prometheus = container(mutable, "Deployment", "prometheus", "prometheus")
    prometheus["args"] = [a for a in prometheus["args"] if "retention.size" not in a]
    for config_map in mutable:
        text = (
            config_map.get("data", {}).get("prometheus.yml")
            if config_map["kind"] == "ConfigMap"
            else None
        )
        if text:
            config = yaml.safe_load(text)
            config.get("storage", {}).get("tsdb", {}).get("retention", {}).pop("size", None)
            config_map["data"]["prometheus.yml"] = yaml.safe_dump(config)
    assert any("unbounded" in p for p in problems_of(mutable, "sizes", "prometheus"))
    prometheus["args"].append("--storage.tsdb.retention.size=4GB")
    assert any("5368709120 bytes" in p for p in problems_of(mutable, "sizes", "prometheus"))


def test_the_jvm_options_decide_what_elasticsearch_writes_to_logs(mutable):
    es = container(mutable, "StatefulSet", "elasticsearch", "elasticsearch")
    use = next(u for u in uses(mutable, CONTRACTS, "elasticsearch") if u.container is es)
    es["env"] = [e for e in es["env"] if e["name"] != "ES_JAVA_OPTS"]
    heap_dump, gc_log = (next(w for w in use.contract["writes"] if w.get("jvm_output") == o)
                         for o in ("heap_dump", "gc_log"))  # fmt: skip
    # The mounted files/elasticsearch-gc.options sends it to data/ (no -Xmx: no size).
    assert jvm_writes(use, heap_dump) == [("/usr/share/elasticsearch/data", None)]
    # ES_JAVA_OPTS comes after jvm.options.d, so it wins.
    es["env"].append(
        {"name": "ES_JAVA_OPTS", "value": "-Xmx1g -XX:HeapDumpPath=/usr/share/elasticsearch/logs"}
    )
    assert jvm_writes(use, heap_dump) == [("/usr/share/elasticsearch/logs", 2**30)]
    es["env"][-1]["value"] = "-Xlog:disable -Xlog:gc:file=/tmp/gc.log::filecount=1,filesize=1m"
    assert jvm_writes(use, gc_log) == [("/tmp", 2 * 2**20)]


def test_a_non_numeric_or_missing_run_as_user_is_reported(mutable):
    spec = pod_spec(workload(mutable, "Deployment", "prometheus"))
    del spec["securityContext"]["runAsUser"]
    assert any(
        "needs a numeric non-zero runAsUser" in p
        for p in problems_of(mutable, "user", "prometheus")
    )
    spec["securityContext"]["runAsUser"] = "nobody"
    assert any(
        "needs a numeric non-zero runAsUser" in p
        for p in problems_of(mutable, "user", "prometheus")
    )
    pod_spec(workload(mutable, "StatefulSet", "elasticsearch"))["securityContext"]["runAsUser"] = (
        1001
    )
    assert any("not the uid 1000" in p for p in problems_of(mutable, "user", "elasticsearch"))


def test_a_probe_on_a_wrong_port_or_path_is_reported(mutable):
    jaeger = container(mutable, "Deployment", "jaeger", "jaeger")
    jaeger["livenessProbe"]["httpGet"]["port"] = "metrics"
    assert any(
        "targets port 8888 path /status" in p for p in problems_of(mutable, "probes", "jaeger")
    )
    ksm = container(mutable, "Deployment", "kube-state-metrics", "kube-state-metrics")
    ksm["readinessProbe"]["httpGet"]["path"] = "/ready"
    assert any("path /ready" in p for p in problems_of(mutable, "probes", "kube-state-metrics"))


def test_a_probe_on_an_endpoint_that_needs_credentials_without_them_is_reported(mutable):
    kibana = container(mutable, "Deployment", "kibana", "kibana")
    kibana["readinessProbe"]["httpGet"]["path"] = "/api/status"
    assert any("needs credentials" in p for p in problems_of(mutable, "probes", "kibana"))
    es = container(mutable, "StatefulSet", "elasticsearch", "elasticsearch")
    es["readinessProbe"]["exec"]["command"] = [
        "curl", "-sf", "http://127.0.0.1:9200/_cluster/health"
    ]  # fmt: skip
    assert any("needs credentials" in p for p in problems_of(mutable, "probes", "elasticsearch"))


def test_an_unknown_flag_or_feature_is_reported(mutable):
    ksm = container(mutable, "Deployment", "kube-state-metrics", "kube-state-metrics")
    ksm["args"].append("--metric-opt-in-list=x")
    assert any(
        "--metric-opt-in-list" in p for p in problems_of(mutable, "flags", "kube-state-metrics")
    )
    prometheus = container(mutable, "Deployment", "prometheus", "prometheus")
    prometheus["args"].append("--enable-feature=agent")
    assert any("['agent']" in p for p in problems_of(mutable, "flags", "prometheus"))
    init = container(mutable, "StatefulSet", "elasticsearch", "config")
    init["command"] = ["sh", "-c", "true"]
    assert any("runs sh" in p for p in problems_of(mutable, "flags", "elasticsearch"))


def test_a_deprecated_flag_is_reported(mutable):
    prometheus = container(mutable, "Deployment", "prometheus", "prometheus")
    prometheus["args"].append("--storage.tsdb.retention.time=1d")
    assert any("deprecated" in p for p in problems_of(mutable, "deprecated-flags", "prometheus"))


def test_an_unknown_env_var_is_reported_and_one_our_files_use_is_not(mutable):
    exporter = container(mutable, "Deployment", "elasticsearch-exporter", "elasticsearch-exporter")
    exporter["env"].append({"name": "ES_USER", "value": "x"})
    assert any("env ES_USER" in p for p in problems_of(mutable, "env", "elasticsearch-exporter"))
    fluent_bit = find(mutable, "DaemonSet", "fluent-bit", "obs-logging")
    fb = pod_spec(fluent_bit)["containers"][0]
    assert not any("ES_HOST" in p for p in problems_of(mutable, "env", "fluent-bit"))
    fb["env"].append({"name": "ES_INDEX", "value": "x"})
    assert any("env ES_INDEX" in p for p in problems_of(mutable, "env", "fluent-bit"))
    fb["args"] = ["$(ES_INDEX)"]
    assert not any("env ES_INDEX" in p for p in problems_of(mutable, "env", "fluent-bit"))
