"""The services use OpenTelemetry through its public API only.

Private names (a leading underscore) carry no compatibility promise: an upgrade within
the ranges services/telemetry/pyproject.toml allows may rename or remove them, and code
that reached into them has failed inside span.end() or silently dropped every span
(issue #18). This scans every Python file under services/ for
  - imports from `_`-prefixed opentelemetry modules (opentelemetry.sdk._shared_internal,
    ...http._common, opentelemetry.instrumentation._semconv) or of `_`-prefixed names
    from opentelemetry modules;
  - `._name` attribute access, and getattr/setattr/hasattr with a "_name" string, on
    anything but the file's own objects (self, cls, and the few names in ALLOWED).
Reads no environment variables. A bad sample proves the scanner finds each kind.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
# `._name` on objects that are not OpenTelemetry's, by file ("*": every file).
ALLOWED = {
    # os._exit is the standard library's documented hard exit, not a private name.
    "*": {"os._exit"},
    # Our own _StdoutHandler (logs.py), resetting its state after fork.
    "logs.py": {"handler._reset_state"},
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(source: str, filename: str = "<sample>") -> list[str]:
    found = []
    allowed = ALLOWED["*"] | ALLOWED.get(Path(filename).name, set())
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("opentelemetry"):
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{where}: import from private module {node.module}")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{where}: private name {alias.name} from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "opentelemetry" and any(_private(p) for p in parts):
                    found.append(f"{where}: import of private module {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            base = ast.unparse(node.value)
            if base not in ("self", "cls") and f"{base}.{node.attr}" not in allowed:
                found.append(f"{where}: private attribute {base}.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and ast.unparse(node.args[0]) not in ("self", "cls")
        ):
            found.append(f"{where}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_the_services_use_only_public_opentelemetry_apis():
    files = sorted(SERVICES.rglob("*.py"))
    assert any(f.name == "extension.py" for f in files)
    found = [v for path in files for v in violations(path.read_text(), str(path))]
    assert found == []


BAD_SAMPLE = """
from opentelemetry.sdk._shared_internal import BatchProcessor
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.exporter.otlp.proto.http import _common
from opentelemetry.util.http import _parse_url
import opentelemetry.exporter.otlp.proto.common._internal
from opentelemetry.sdk.trace.export import BatchSpanProcessor

def export(processor, exporter):
    queue = processor._batch_processor._queue
    getattr(processor, "_batch_processor", None)
    return exporter._client
"""


@pytest.mark.parametrize(
    "expected",
    [
        "import from private module opentelemetry.sdk._shared_internal",
        "import from private module opentelemetry.instrumentation._semconv",
        "private name _StabilityMode",
        "private name _common",
        "private name _parse_url",
        "import of private module opentelemetry.exporter.otlp.proto.common._internal",
        "private attribute processor._batch_processor._queue",
        "private attribute processor._batch_processor",
        "getattr(..., '_batch_processor')",
        "private attribute exporter._client",
    ],
)
def test_the_scanner_finds_each_kind_of_private_use(expected):
    assert any(expected in v for v in violations(BAD_SAMPLE)), violations(BAD_SAMPLE)


def test_the_scanner_passes_public_use():
    sample = (
        "from opentelemetry.sdk.trace.export import BatchSpanProcessor\nBatchSpanProcessor(x)\n"
    )
    assert violations(sample) == []
