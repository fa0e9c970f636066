"""Builds `obs-standin-analysis`, a classic Elasticsearch plugin that gives Maven's
integ-test-zip of Elasticsearch the analysis components its `.security` index needs.

That zip ships without the analysis-common module, so the first native-realm write
(a password, a role, a user) fails creating `.security` with `Unknown filter type
[pattern_capture]`: the index's `email` analyzer is the `uax_url_email` tokenizer with the
filters `pattern_capture`, `lowercase` and `unique` (SecuritySystemIndices in the zip's
modules/x-pack-security jar). The server itself has `lowercase`; the plugin registers the
other three under analysis-common's names and settings, on Lucene's classes from the
zip's lib/ (see the Java sources in src/).

Output: build_plugin() returns a directory
    <cache_dir()>/es-standin-analysis-<ES version>-<hash of the sources>/
        obs-standin-analysis-<ES version>.jar
        plugin-descriptor.properties
whose two files are what Elasticsearch expects in ES_HOME/plugins/obs-standin-analysis/
(PLUGIN_NAME). It is built once per version and source hash (javac --release 17 against
the zip's lib/*.jar) and reused afterwards; files are world-readable, for the system user
obs-es and for image builds.

Reads OBS_STACK_CACHE (through cache_dir()) and ES_JAVA_HOME or JAVA_HOME (the JDK whose
javac compiles, through java_home(); else javac on PATH).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from obs_tools.common.versions import VERSIONS, cache_dir, elasticsearch_home, java_home

ES_VERSION = VERSIONS["ELASTICSEARCH_VERSION"]
PLUGIN_NAME = "obs-standin-analysis"
HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
DESCRIPTOR = HERE / "plugin-descriptor.properties"
JAVA_RELEASE = "17"
JAVAC_TIMEOUT_S = 300
# A fixed time in the jar, so that a rebuild of the same sources gives the same bytes.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PluginBuildError(RuntimeError):
    """The plugin could not be built; the message carries javac's output."""


def source_files() -> list[Path]:
    return sorted(SOURCES.rglob("*.java"))


def sources_hash() -> str:
    """12 hex digits over the Java sources and the descriptor (their paths and bytes)."""
    digest = hashlib.sha256()
    for path in [*source_files(), DESCRIPTOR]:
        digest.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def plugin_dir() -> Path:
    """Where build_plugin() puts (or finds) the plugin of these sources."""
    return cache_dir() / f"es-standin-analysis-{ES_VERSION}-{sources_hash()}"


def javac_binary() -> Path | None:
    java = java_home()
    if java and (java / "bin" / "javac").is_file():
        return java / "bin" / "javac"
    found = shutil.which("javac")
    return Path(found) if found else None


def build_plugin() -> Path:
    """The plugin directory (see the module docstring), built unless already cached."""
    target = plugin_dir()
    if (target / DESCRIPTOR.name).is_file():
        return target
    _check_descriptor()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _build_into(staging)
        os.chmod(staging, 0o755)
        # Atomic. It fails when a concurrent build of the same sources won (its result is
        # the same); any other failure shows as the missing target below.
        with contextlib.suppress(OSError):
            os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (target / DESCRIPTOR.name).is_file():
        raise PluginBuildError(f"{target}: not created (rename from {staging} failed)")
    return target


def _check_descriptor() -> None:
    """A classic plugin loads only into the exact server version its descriptor names."""
    entries = dict(
        line.split("=", 1)
        for line in DESCRIPTOR.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    expected = {"name": PLUGIN_NAME, "elasticsearch.version": ES_VERSION}
    wrong = {key: entries.get(key) for key, value in expected.items() if entries.get(key) != value}
    if wrong:
        raise PluginBuildError(
            f"{DESCRIPTOR}: expected {expected}, found {wrong}; after a change of "
            "ELASTICSEARCH_VERSION, check the sources against the new server API"
        )


def _build_into(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="es-standin-build-") as scratch, _es_lib() as lib:
        classes = Path(scratch) / "classes"
        _compile(lib, classes)
        _write_jar(classes, out / f"{PLUGIN_NAME}-{ES_VERSION}.jar")
    shutil.copyfile(DESCRIPTOR, out / DESCRIPTOR.name)
    for path in out.iterdir():
        os.chmod(path, 0o644)


@contextlib.contextmanager
def _es_lib() -> Iterator[Path]:
    """The distribution's lib/: the unpacked home's, else extracted from the zip."""
    unpacked = elasticsearch_home() / "lib"
    if (unpacked / f"elasticsearch-{ES_VERSION}.jar").is_file():
        yield unpacked
        return
    archive = cache_dir() / "dl" / f"elasticsearch-{ES_VERSION}.zip"
    if not archive.is_file():
        raise PluginBuildError(
            f"neither {unpacked} nor {archive} exists; run `scripts/bootstrap.sh all`"
        )
    prefix = f"elasticsearch-{ES_VERSION}/lib/"
    with (
        tempfile.TemporaryDirectory(prefix="es-standin-lib-") as tmp,
        zipfile.ZipFile(archive) as zipped,
    ):
        for member in zipped.namelist():
            # Only the jars directly in lib/: the compile needs nothing else.
            name = member.removeprefix(prefix)
            if member.startswith(prefix) and name.endswith(".jar") and "/" not in name:
                (Path(tmp) / name).write_bytes(zipped.read(member))
        yield Path(tmp)


def _compile(lib: Path, classes: Path) -> None:
    javac = javac_binary()
    if javac is None:
        raise PluginBuildError("no javac (a JDK 17 or newer): set JAVA_HOME or install one")
    argv = [
        str(javac), "--release", JAVA_RELEASE, "-encoding", "UTF-8", "-Xlint:all",
        "-d", str(classes), "-cp", f"{lib}/*", *map(str, source_files()),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=JAVAC_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PluginBuildError(f"javac ran over {JAVAC_TIMEOUT_S} s: {exc.stderr}") from exc
    if result.returncode != 0:
        raise PluginBuildError(
            f"javac failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def _write_jar(classes: Path, jar: Path) -> None:
    entries = sorted(p for p in classes.rglob("*") if p.is_file())
    manifest = f"Manifest-Version: 1.0\r\nCreated-By: {__name__}\r\n\r\n"
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr(zipfile.ZipInfo("META-INF/MANIFEST.MF", ZIP_TIME), manifest)
        for path in entries:
            info = zipfile.ZipInfo(str(path.relative_to(classes)), ZIP_TIME)
            out.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)


def home_with_plugin(dest: Path, plugin: Path) -> Path:
    """A private Elasticsearch home at `dest` with the plugin in its plugins/.

    Elasticsearch reads plugins only from ES_HOME/plugins, and the shared home (owned by
    the bootstrap) must stay as it is: the copy's files are hard links where the file
    system allows (instant, and Elasticsearch writes nothing into its home), else copies.
    """
    shutil.copytree(elasticsearch_home(), dest, copy_function=_link_or_copy)
    installed = dest / "plugins" / PLUGIN_NAME
    shutil.copytree(plugin, installed)
    return dest


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
