"""The Secrets `make up` creates, in one table, and how their values are chosen.

Reads the environment variable named by each key in SECRETS (for example
GRAFANA_ADMIN_PASSWORD). A key's value is, in order: that variable if set; the value
already in the cluster (so a second `make up` never changes a password unasked); the
key's default; else a new random value. Values never appear on the terminal or in a
command line (they go to kubectl on stdin) unless --show-secrets.

A variable that changes a value already in the cluster is a credential change:
ensure_secrets returns those keys, and `make up` re-runs the Jobs and restarts the
workloads that read them (readers(), rerun_jobs(), restart_readers(); containers read
Secrets only when they start). Except a key marked fixed (elastic-password:
Elasticsearch takes it only when its data is first created), which is refused before
any Secret is written.

Also the Secret steps of the other commands: preflight refuses a render that refers to
a Secret this table does not create (check_table), and `make down` deletes exactly the
Secrets of this table (delete_secrets).
"""

from __future__ import annotations

import base64
import json
import os
import secrets as random_source
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

from .contract import PART_OF, PART_OF_LABEL, WORKLOAD_KINDS
from .kubectl import DeployError, Kubectl

# (kind, namespace, name) of a workload or Job of the render.
Reader = tuple[str, str, str]


@dataclass(frozen=True)
class Key:
    key: str
    env: str | None = None
    default: str | None = None  # None: random
    random_bytes: int = 24  # token_urlsafe: 24 bytes -> 32 characters
    # (namespace, secret, key): the same value as that key (a Secret cannot be read
    # across namespaces, so a component elsewhere needs its own copy).
    same_as: tuple[str, str, str] | None = None
    # Why the value cannot change once deployed (None: it can).
    fixed: str | None = None


@dataclass(frozen=True)
class SecretSpec:
    namespace: str
    name: str
    keys: tuple[Key, ...]


# Exactly the Secrets and keys that the manifests in k8s/ refer to (secretKeyRef and
# secret volumes); preflight refuses a render that refers to a Secret or key this
# table does not create (not_in_table), and tests/k8s/ checks the converse.
SECRETS = (
    SecretSpec(
        "obs-monitoring",
        "grafana-admin",
        (
            # Never admin/admin: the user is fixed, the password random unless given.
            Key("admin-user", "GRAFANA_ADMIN_USER", default="obs-admin"),
            Key("admin-password", "GRAFANA_ADMIN_PASSWORD"),
            Key("secret-key", "GRAFANA_SECRET_KEY"),
        ),
    ),
    SecretSpec(
        "obs-monitoring",
        "elasticsearch-credentials",
        (
            # elastic: the bootstrap superuser, used only by the setup and import Jobs
            # (and to log in to Kibana). The others are the users the setup Job creates
            # (k8s/monitoring/files/elasticsearch-setup.sh), one per client.
            Key(
                "elastic-password",
                "ELASTIC_PASSWORD",
                fixed="Elasticsearch takes the elastic (bootstrap) password only when it "
                "first creates its data; a new value in the Secret would lock the setup and "
                "import Jobs (and your Kibana login) out",
            ),
            Key("kibana-system-password", "KIBANA_SYSTEM_PASSWORD"),
            Key("grafana-password", "ELASTICSEARCH_GRAFANA_PASSWORD"),
            Key("fluent-bit-password", "ELASTICSEARCH_FLUENT_BIT_PASSWORD"),
            Key("jaeger-password", "ELASTICSEARCH_JAEGER_PASSWORD"),
            Key("jaeger-index-cleaner-password", "ELASTICSEARCH_JAEGER_INDEX_CLEANER_PASSWORD"),
        ),
    ),
    SecretSpec(
        "obs-monitoring",
        "jaeger-elasticsearch",
        (
            # Jaeger's own Elasticsearch user (create, write, read jaeger-*), mounted as
            # the file that jaeger/config.yaml reads: Jaeger watches it.
            Key(
                "password",
                same_as=("obs-monitoring", "elasticsearch-credentials", "jaeger-password"),
            ),
        ),
    ),
    SecretSpec(
        "obs-monitoring",
        "jaeger-es-index-cleaner",
        (
            # The CronJob's user: lists and deletes old jaeger-* indices, nothing else.
            Key(
                "password",
                same_as=(
                    "obs-monitoring",
                    "elasticsearch-credentials",
                    "jaeger-index-cleaner-password",
                ),
            ),
        ),
    ),
    SecretSpec(
        "obs-monitoring",
        "kibana-encryption-keys",
        # Kibana wants at least 32 characters; 32 bytes give 43.
        (Key("encryption-key", "KIBANA_ENCRYPTION_KEY", random_bytes=32),),
    ),
    SecretSpec(
        "obs-monitoring",
        "alertmanager-smtp",
        # The in-cluster mail catcher takes mail without authentication.
        (Key("smtp-password", "SMTP_PASSWORD", default=""),),
    ),
    SecretSpec(
        "obs-logging",
        "fluent-bit-elasticsearch",
        (
            # Fluent Bit's own Elasticsearch user (write-only to obs-logs-*).
            Key(
                "password",
                same_as=("obs-monitoring", "elasticsearch-credentials", "fluent-bit-password"),
            ),
        ),
    ),
)


def choose_values(
    spec: SecretSpec,
    existing: Mapping[str, str],
    environ: Mapping[str, str],
    resolved: Mapping[tuple[str, str, str], str],
    token: Callable[[int], str] = random_source.token_urlsafe,
) -> tuple[dict[str, str], dict[str, str]]:
    """({key: value}, {key: where the value came from}) for one Secret."""
    values, sources = {}, {}
    for key in spec.keys:
        if key.same_as:
            values[key.key], sources[key.key] = resolved[key.same_as], "/".join(key.same_as)
        elif key.env and key.env in environ:
            values[key.key], sources[key.key] = environ[key.env], f"from ${key.env}"
        elif key.key in existing:
            values[key.key], sources[key.key] = existing[key.key], "kept"
        elif key.default is not None:
            values[key.key], sources[key.key] = key.default, "default"
        else:
            values[key.key], sources[key.key] = token(key.random_bytes), "random"
    return values, sources


def manifest(spec: SecretSpec, values: Mapping[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {PART_OF_LABEL: PART_OF},
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


def existing_values(kubectl: Kubectl, spec: SecretSpec) -> dict[str, str]:
    result = kubectl.run(
        "get", "secret", spec.name, "-n", spec.namespace, "-o", "json", "--ignore-not-found"
    )
    if not result.stdout.strip():
        return {}
    data = json.loads(result.stdout).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def ensure_secrets(
    kubectl: Kubectl,
    say: Callable[[str], None],
    show: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> set[tuple[str, str, str]]:
    """Create or update every Secret of SECRETS (their namespaces must exist). Returns
    (namespace, secret, key) of the values that existed in the cluster and changed."""
    resolved: dict[tuple[str, str, str], str] = {}
    changed: set[tuple[str, str, str]] = set()
    planned = []
    for spec in SECRETS:
        existing = existing_values(kubectl, spec)
        values, sources = choose_values(spec, existing, environ, resolved)
        for key, value in values.items():
            resolved[(spec.namespace, spec.name, key)] = value
            if key in existing and existing[key] != value:
                changed.add((spec.namespace, spec.name, key))
                sources[key] += ", changed"
        planned.append((spec, values, sources))
    # Refused before anything is written: a half-applied change is worse than none.
    for spec in SECRETS:
        for key in spec.keys:
            if key.fixed and (spec.namespace, spec.name, key.key) in changed:
                raise DeployError(
                    f"${key.env} differs from {key.key} in the deployed Secret "
                    f"{spec.namespace}/{spec.name}, and it cannot change: {key.fixed}. "
                    "Nothing was changed. Unset it to keep the deployed value, or remove "
                    f"the stack with its data (`make down`) and `make up` with the new one."
                )
    for spec, values, sources in planned:
        # Server-side apply: no last-applied-configuration annotation holding the values.
        kubectl.run(
            "apply", "--server-side", "--field-manager=obs-stack-up", "--force-conflicts",
            "-f", "-",
            stdin=json.dumps(manifest(spec, values)),
        )  # fmt: skip
        described = ", ".join(f"{k}: {sources[k]}" for k in values)
        say(f"  Secret {spec.namespace}/{spec.name} ({described})")
        if show:
            for key, value in values.items():
                say(f"    {key} = {value}")
    return changed


def pod_secret_refs(doc: dict, optional: bool = False) -> set[tuple[str, str | None]]:
    """(secret, key or None for the whole Secret) that a workload's pods read:
    secretKeyRef, envFrom secretRef and secret volumes (optional ones only if asked)."""
    spec = (doc or {}).get("spec") or {}
    if doc and doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    found: set[tuple[str, str | None]] = set()
    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and (optional or not ref.get("optional")):
                found.add((ref["name"], ref["key"]))
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref and (optional or not ref.get("optional")):
                found.add((ref["name"], None))
    for volume in pod.get("volumes") or []:
        ref = volume.get("secret")
        if ref and (optional or not ref.get("optional")):
            keys = [item["key"] for item in ref.get("items") or []] or [None]
            found.update((ref["secretName"], key) for key in keys)
    return found


def consumers(render_yaml: str, changed: set[tuple[str, str, str]]) -> list[Reader]:
    """(kind, namespace, name) of the render's workloads and Jobs whose pods read one of
    the changed (namespace, secret, key), in render order."""
    found = []
    for doc in yaml.safe_load_all(render_yaml):
        if not doc or not ((doc.get("spec") or {}).get("template") or {}).get("spec"):
            continue
        namespace = (doc.get("metadata") or {}).get("namespace", "default")
        for secret, key in pod_secret_refs(doc, optional=True):
            if any(
                (namespace, secret) == (ns, name) and key in (None, changed_key)
                for ns, name, changed_key in changed
            ):
                found.append((doc["kind"], namespace, doc["metadata"]["name"]))
                break
    return found


def referenced_secret_keys(render_yaml: str) -> set[tuple[str, str, str | None]]:
    """(namespace, secret, key or None for the whole Secret) that pods in the render
    need: secretKeyRef, envFrom secretRef and secret volumes, unless marked optional."""
    found: set[tuple[str, str, str | None]] = set()
    for doc in yaml.safe_load_all(render_yaml):
        namespace = ((doc or {}).get("metadata") or {}).get("namespace", "default")
        found.update((namespace, secret, key) for secret, key in pod_secret_refs(doc))
    return found


def not_in_table(render_yaml: str) -> list[str]:
    """Secret references of the render that SECRETS does not create."""
    table = {(s.namespace, s.name): {k.key for k in s.keys} for s in SECRETS}
    problems = []
    for namespace, name, key in sorted(
        referenced_secret_keys(render_yaml), key=lambda ref: (ref[0], ref[1], ref[2] or "")
    ):
        keys = table.get((namespace, name))
        if keys is None:
            problems.append(f"Secret {namespace}/{name}")
        elif key is not None and key not in keys:
            problems.append(f"key {key!r} of Secret {namespace}/{name}")
    return problems


def check_table(render_yaml: str) -> None:
    """Preflight: the render must need no Secret or key that SECRETS does not create."""
    unknown = not_in_table(render_yaml)
    if unknown:
        raise DeployError(
            "k8s/ refers to Secrets that `make up` does not create "
            "(tools/obs_tools/deploy/secrets.py, SECRETS): " + ", ".join(unknown)
        )


def readers(
    render_yaml: str, changed: set[tuple[str, str, str]]
) -> tuple[list[Reader], list[Reader]]:
    """(Jobs, other workloads) of the render whose pods read a changed credential."""
    found = consumers(render_yaml, changed) if changed else []
    jobs = [r for r in found if r[0] == "Job"]
    workloads = [r for r in found if r[0] in WORKLOAD_KINDS and r[0] != "Job"]
    return jobs, workloads


def rerun_jobs(
    kubectl: Kubectl,
    say: Callable[[str], None],
    changed: set[tuple[str, str, str]],
    jobs: list[Reader],
) -> None:
    """A finished Job never runs again: delete the ones that read a changed
    credential (elasticsearch-setup sets the users' passwords), so that the apply
    creates them anew and they run with the new values."""
    say(f"  Credentials changed: {', '.join('/'.join(c) for c in sorted(changed))}.")
    for _, namespace, name in jobs:
        say(f"  job/{name} ({namespace}) reads them: deleting it so that it runs again")
        kubectl.run(
            "delete", "job", name, "-n", namespace, "--ignore-not-found", "--wait",
            "--timeout=120s", timeout=150,
        )  # fmt: skip


def restart_readers(kubectl: Kubectl, say: Callable[[str], None], workloads: list[Reader]) -> None:
    """Containers read a Secret's values at start (environment variables): restart
    the workloads that read a changed one, so they use the new values."""
    for kind, namespace, name in workloads:
        say(f"  {kind.lower()}/{name} ({namespace}) reads a changed credential: restarting it")
        kubectl.run("rollout", "restart", f"{kind.lower()}/{name}", "-n", namespace, timeout=60)


def delete_secrets(kubectl: Kubectl) -> None:
    """`make down`: delete the Secrets `make up` made, by name, as `down` deletes
    everything (not by label)."""
    for spec in SECRETS:
        kubectl.run(
            "delete", "secret", spec.name, "-n", spec.namespace, "--ignore-not-found",
            timeout=60,
        )  # fmt: skip
