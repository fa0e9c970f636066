"""Elasticsearch's config and logs folders in Kubernetes (k8s/monitoring/elasticsearch.yaml),
without a cluster.

The init container `config` copies the image's config folder into an emptyDir. The kubelet
creates that emptyDir root:1000 mode 2777 (fsGroup 1000) and the container runs as uid/gid
1000: its shell command is run here, as the manifest has it, in that situation (as root,
dropping to 1000 with setpriv), on a stand-in of the image's config folder.

The GC log: the image's jvm.options keeps 33 x 64 MiB of it, the `logs` emptyDir has a
sizeLimit; files/elasticsearch-gc.options (copied into jvm.options.d/ by the init container)
must bound it below that limit, which is checked from the files and with a real JVM.

Reads CI: with CI=true, not being root (the init container test) or a missing JVM fails
instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import VERSIONS, elasticsearch_home, java_home

from tests.support.requirements import unavailable

MANIFEST = REPO / "k8s" / "monitoring" / "elasticsearch.yaml"
FILES = REPO / "k8s" / "monitoring" / "files"
KUSTOMIZATION = REPO / "k8s" / "monitoring" / "kustomization.yaml"
GC_OPTIONS = FILES / "elasticsearch-gc.options"
ES_UID = ES_GID = 1000
# The command of the init container before the fix: `cp -a` wants to give /config/. the
# times (and mode) of the image's folder, which only its owner (root) may do.
OLD_COMMAND = (
    "cp -a /usr/share/elasticsearch/config/. /config/ "
    "&& cp /obs-config/elasticsearch.yml /config/elasticsearch.yml"
)
# The image's GC log: config/jvm.options of the 8.19.4 distribution (the zip that
# `scripts/bootstrap.sh` installs), a file name relative to the server JVM's working
# directory, which its server CLI sets to the logs folder (lib/tools/server-cli,
# ServerProcessBuilder.createProcess is given ServerArgs.logsDir).
IMAGE_GC_LINE = (
    "-Xlog:gc*,gc+age=trace,safepoint:file=gc.log:utctime,level,pid,tags:filecount=32,filesize=64m"
)
# Room in the logs volume for what is not the GC log: the JVM's hs_err_pid*.log files
# (-XX:ErrorFile=logs/...); the image's log4j2 configuration logs to the console.
OTHER_LOGS_HEADROOM = 64 * 2**20


def statefulset() -> dict:
    (es,) = [
        doc
        for doc in yaml.safe_load_all(MANIFEST.read_text())
        if doc and doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "elasticsearch"
    ]
    return es


def pod_spec() -> dict:
    return statefulset()["spec"]["template"]["spec"]


def main_container() -> dict:
    (container,) = [c for c in pod_spec()["containers"] if c["name"] == "elasticsearch"]
    return container


def init_container() -> dict:
    (container,) = [c for c in pod_spec()["initContainers"] if c["name"] == "config"]
    return container


def mount_path(container: dict, volume: str) -> str:
    (path,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume]
    return path


def init_script() -> str:
    command = init_container()["command"]
    assert command[:2] == ["bash", "-ec"] and len(command) == 3, command
    return command[2]


# --- Running the init container's command -------------------------------------------------


def substitute_paths(script: str, paths: dict[str, Path]) -> str:
    """`script` with each absolute path rooted at a key of `paths` moved below its value;
    an absolute path under none of them is an error (the test would not see its effect)."""
    roots = sorted(paths, key=len, reverse=True)

    def move(match: re.Match) -> str:
        path = match.group(0)
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return str(paths[root]) + path[len(root) :]
        raise AssertionError(f"the init container's command names {path}, which no mount holds")

    return re.sub(r"(?<![\w.-])/[\w./-]+", move, script)


def make_image_config(folder: Path) -> None:
    """A stand-in of the image's config folder, owned and moded as its Dockerfile leaves it
    (elastic/elasticsearch distribution/docker/src/docker/dockerfiles/default/Dockerfile:
    files root:0 mode 0664, config and config/jvm.options.d owned by uid 1000 mode 0775).
    The file names are those of the 8.19.4 distribution when it is installed."""
    installed = elasticsearch_home() / "config"
    if installed.is_dir():
        shutil.copytree(installed, folder)
    else:
        (folder / "jvm.options.d").mkdir(parents=True)
        for name in ("elasticsearch.yml", "jvm.options", "log4j2.properties", "users"):
            (folder / name).write_text(f"# the image's {name}\n")
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            os.chown(path, ES_UID, 0)
            path.chmod(0o775)
        else:
            os.chown(path, 0, 0)
            path.chmod(0o664)
    # An old time on the folder, as in the image: the copy must not need to carry it over.
    os.utime(folder, (315532800, 315532800))


def make_config_map(folder: Path) -> None:
    """The ConfigMap elasticsearch-config as mounted: its generator's files, root-owned."""
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    (generator,) = [
        g for g in kustomization["configMapGenerator"] if g["name"] == "elasticsearch-config"
    ]
    folder.mkdir()
    for entry in generator["files"]:
        key, _, source = entry.rpartition("=")
        source_path = KUSTOMIZATION.parent / source
        shutil.copy(source_path, folder / (key or source_path.name))
    folder.chmod(0o755)


def make_empty_dir(folder: Path) -> None:
    """An emptyDir of a pod with fsGroup 1000, as the kubelet leaves it: root:1000, 2777."""
    folder.mkdir()
    os.chown(folder, 0, ES_GID)
    folder.chmod(0o2777)


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        unavailable("needs root: the test creates root-owned folders and drops to uid 1000")
    if not shutil.which("setpriv"):
        unavailable("setpriv (util-linux) is not installed")


@pytest.fixture
def pod_dirs(as_root) -> Iterator[dict[str, Path]]:
    """Folders standing for the init container's mounts and the image's config folder, in a
    place uid 1000 can reach (pytest's temp dirs are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="es-init-", dir="/tmp"))
    base.chmod(0o755)
    try:
        image_config = base / "image-config"
        make_image_config(image_config)
        init = init_container()
        config = base / "config-volume"
        make_empty_dir(config)
        obs_config = base / "obs-config"
        make_config_map(obs_config)
        yield {
            # The image's folder is where the main container mounts the copy.
            mount_path(main_container(), "config"): image_config,
            mount_path(init, "config"): config,
            mount_path(init, "obs-config"): obs_config,
        }
    finally:
        shutil.rmtree(base)


def run_as_es_user(script: str, *, umask: int = 0o022, env=None) -> subprocess.CompletedProcess:
    # runc's umask when the OCI spec sets none is 0022 (libcontainer/rootfs_linux.go).
    return subprocess.run(
        [
            "setpriv", f"--reuid={ES_UID}", f"--regid={ES_GID}", "--clear-groups",
            "bash", "-ec", script,
        ],
        capture_output=True, text=True, timeout=120, check=False, umask=umask, env=env,
    )  # fmt: skip


def test_the_old_command_fails_on_the_kubelets_empty_dir(pod_dirs):
    """The failure of issue #15: reproduces, so the test below can see it come back."""
    result = run_as_es_user(substitute_paths(OLD_COMMAND, pod_dirs))
    assert result.returncode != 0
    assert "preserving times for" in result.stderr and "Operation not permitted" in result.stderr


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_the_init_container_copies_the_config_on_the_kubelets_empty_dir(pod_dirs, umask):
    result = run_as_es_user(substitute_paths(init_script(), pod_dirs), umask=umask)
    assert result.returncode == 0, result.stderr
    image = pod_dirs[mount_path(main_container(), "config")]
    config = pod_dirs[mount_path(init_container(), "config")]
    copied = {p.relative_to(config) for p in config.rglob("*")}
    assert {p.relative_to(image) for p in image.rglob("*")} <= copied
    assert (config / "elasticsearch.yml").read_text() == (FILES / "elasticsearch.yml").read_text()
    assert (config / "jvm.options.d" / "gc.options").read_text() == GC_OPTIONS.read_text()
    # What Elasticsearch (uid 1000) needs: to read every file, and to write in the folders
    # (the entrypoint creates config/elasticsearch.keystore). Whatever the umask, the
    # copies are uid 1000's.
    for path in [config, *config.rglob("*")]:
        if path == config:
            continue
        assert path.stat().st_uid == ES_UID, path
        needed = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & needed == needed, (path, oct(path.stat().st_mode))


def test_elasticsearch_creates_its_keystore_in_the_copied_config(pod_dirs):
    """What the image's entrypoint does first with ELASTIC_PASSWORD set, with the real
    8.19.4 elasticsearch-keystore, as uid 1000, in the folder the init container filled."""
    keystore_tool = elasticsearch_home() / "bin" / "elasticsearch-keystore"
    java = java_home()
    if not keystore_tool.exists() or java is None:
        unavailable(
            f"Elasticsearch {VERSIONS['ELASTICSEARCH_VERSION']} or a JVM is not installed: "
            "run `make bootstrap`"
        )
    assert run_as_es_user(substitute_paths(init_script(), pod_dirs)).returncode == 0
    config = pod_dirs[mount_path(init_container(), "config")]
    env = {**os.environ, "ES_PATH_CONF": str(config), "ES_JAVA_HOME": str(java)}
    tool = str(keystore_tool)
    result = run_as_es_user(
        f"{tool} create && echo secret | {tool} add -x bootstrap.password && {tool} list",
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bootstrap.password" in result.stdout.split()


# --- The GC log against the logs volume -----------------------------------------------------


UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def option_lines(path: Path) -> list[str]:
    """The JVM options of an Elasticsearch jvm.options file (comments and blanks dropped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def file_outputs(lines: list[str]) -> dict[str, dict[str, int]]:
    """The -Xlog file outputs that `lines` leave configured, by file name, with their
    filecount and filesize (bytes). The JVM's rules: -Xlog:disable clears every output; an
    output named again keeps its first options."""
    outputs: dict[str, dict[str, int]] = {}
    for line in lines:
        if line == "-Xlog:disable":
            outputs.clear()
            continue
        match = re.fullmatch(r"-Xlog:[^:]*:file=([^:]+)(?::[^:]*)?(?::(.*))?", line)
        if not match or match.group(1) in outputs:
            continue
        options = dict(o.split("=", 1) for o in (match.group(2) or "").split(",") if o)
        # The JVM has defaults for both; a bound this test relies on is written out.
        assert {"filecount", "filesize"} <= set(options), f"{line}: give filecount and filesize"
        size = re.fullmatch(r"(\d+)([kmg]?)", options["filesize"].lower())
        outputs[match.group(1)] = {
            "filecount": int(options["filecount"]),
            "filesize": int(size.group(1)) * UNITS[size.group(2)],
        }
    return outputs


def quantity_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, quantity
    return int(match.group(1)) * {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[match.group(2)]


def logs_size_limit() -> int:
    (volume,) = [v for v in pod_spec()["volumes"] if v["name"] == "logs"]
    return quantity_bytes(volume["emptyDir"]["sizeLimit"])


def image_gc_line() -> str:
    """The image's GC logging line: from the installed 8.19.4 distribution when there is
    one, else as quoted above."""
    installed = elasticsearch_home() / "config" / "jvm.options"
    if installed.exists():
        (line,) = [x for x in option_lines(installed) if x.startswith("-Xlog:gc")]
        return line
    return IMAGE_GC_LINE


def gc_log_bytes(output: dict[str, int]) -> int:
    # The file being written plus `filecount` rotated ones (gc.log, gc.log.0 ... .N-1).
    return (output["filecount"] + 1) * output["filesize"]


def test_the_gc_options_reach_jvm_options_d():
    """Shipped in the ConfigMap and copied under a name the server CLI reads (8.19.4:
    config/jvm.options.d/*.options, after config/jvm.options)."""
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    (generator,) = [
        g for g in kustomization["configMapGenerator"] if g["name"] == "elasticsearch-config"
    ]
    assert f"files/{GC_OPTIONS.name}" in generator["files"]
    config_mount = mount_path(init_container(), "config")
    copy = re.search(rf"\bcp /obs-config/{GC_OPTIONS.name} (\S+)", init_script())
    assert copy, init_script()
    assert re.fullmatch(rf"{re.escape(config_mount)}/jvm\.options\.d/[\w-]+\.options", copy[1])


def test_the_gc_log_fits_the_logs_volume():
    lines = [image_gc_line(), *option_lines(GC_OPTIONS)]
    outputs = file_outputs(lines)
    assert len(outputs) == 1, outputs
    ((path, output),) = outputs.items()
    logs = mount_path(main_container(), "logs")
    assert path.startswith(logs + "/"), f"the GC log {path} is not in the logs volume {logs}"
    total = gc_log_bytes(output) + OTHER_LOGS_HEADROOM
    assert total <= logs_size_limit(), (output, total, logs_size_limit())


def test_the_image_gc_log_alone_would_not_fit():
    """Why the options file exists: without it, the image's settings overflow the volume."""
    ((_, output),) = file_outputs([IMAGE_GC_LINE]).items()
    assert gc_log_bytes(output) > logs_size_limit()


def test_naming_the_same_file_again_would_change_nothing():
    """The rule file_outputs() applies, shown on the image's own file name."""
    same_file = IMAGE_GC_LINE.replace("filecount=32,filesize=64m", "filecount=1,filesize=1m")
    assert file_outputs([IMAGE_GC_LINE, same_file]) == file_outputs([IMAGE_GC_LINE])


def java_log_outputs(java: Path, options: list[str], cwd: Path) -> dict[str, dict[str, int]]:
    """The file outputs a real JVM configures from `options`, as -Xlog:logging=info
    describes them ("#2: file=... filecount=4,filesize=32768K,...")."""
    result = subprocess.run(
        [str(java / "bin" / "java"), *options, "-Xlog:logging=info:stderr", "-version"],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outputs = {}
    for match in re.finditer(r"#\d+: file=(\S+) .*?filecount=(\d+),filesize=(\d+)K", result.stderr):
        outputs[match[1]] = {"filecount": int(match[2]), "filesize": int(match[3]) * 2**10}
    return outputs


@pytest.mark.parametrize("image_file", ["as-shipped", "same-file"])
def test_a_real_jvm_keeps_the_bounded_gc_log(image_file, tmp_path):
    """The JVM given the image's GC line, then this file's lines, as the server CLI orders
    them (its working directory standing for the logs folder, so both name one file);
    "same-file": the image's line naming our file by our name, the case where the JVM
    would keep the image's options if the file did not clear them first."""
    java = java_home()
    if java is None or not (java / "bin" / "java").exists():
        unavailable("no JVM (java on PATH, or ES_JAVA_HOME/JAVA_HOME)")
    ours = option_lines(GC_OPTIONS)
    ((our_path, expected),) = file_outputs(ours).items()
    # The JVM creates the log files when it starts: ours and the image's (relative to the
    # working directory) in tmp_path.
    local = str(tmp_path / "gc.log")
    image = image_gc_line()
    if image_file == "same-file":
        image = re.sub(r"file=[^:]+", f"file={our_path}", image)
    options = [line.replace(our_path, local) for line in [image, *ours]]
    outputs = java_log_outputs(java, options, tmp_path)
    assert outputs == {local: expected}, outputs
