"""Command line of the Kubernetes deployment: preflight, up, status, open, down.

Usage: obs-deploy {preflight,up,status,open,down} [options]
       obs-deploy totals [--markdown] [RENDER]   (docs/kubernetes.md's resource table: totals.py)
Reads OBS_K8S_CONTEXT (kubectl context), OBS_KUBECTL (the kubectl to run; default the
one on PATH) and OBS_MINIKUBE_PROFILE (default obs-stack), as the defaults of --context,
--kubectl and --profile. The steps it runs read more: MINIKUBE_HOME (minikube.py: where
the disk check looks; default ~/.minikube), the Secret variables of secrets.py, and
KUBECONFIG through kubectl (or --kubeconfig). The steps are in deployment.py (preflight,
up, status, down), minikube.py, secrets.py and access.py (open). Exit status: 0 done,
1 failed (with a message naming what and why, never a traceback), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import sys

from obs_tools.common.paths import REPO

from .access import open_uis
from .deployment import DEFAULT_TIMEOUT, Deployment
from .kubectl import DeployError

DEFAULT_PROFILE = "obs-stack"


def parse(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obs-deploy", description=__doc__.splitlines()[0])
    # `totals` is handled by main() before this parser (totals.py has its own options).
    parser.add_argument("command", choices=["preflight", "up", "status", "open", "down"])
    parser.add_argument(
        "--skip-minikube",
        action="store_true",
        help="use the current kubectl context instead of Minikube",
    )
    parser.add_argument("--skip-build", action="store_true", help="do not build the service images")
    parser.add_argument("--registry", help="pull the service images from REGISTRY/obs-frontend:...")
    parser.add_argument(
        "--context",
        default=os.environ.get("OBS_K8S_CONTEXT"),
        help="kubectl context (default: Minikube's, or the current one)",
    )
    parser.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: kubectl's: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--kubectl",
        default=os.environ.get("OBS_KUBECTL"),
        help="the kubectl to run, a path or a name on PATH (default: kubectl)",
    )
    parser.add_argument(
        "--profile",
        # Our own name: minikube's default profile "minikube" is made with 2 CPUs and
        # about a quarter of the RAM, always too small, and may hold someone's work.
        default=os.environ.get("OBS_MINIKUBE_PROFILE", DEFAULT_PROFILE),
        help=f"Minikube profile, also its kubectl context (default: {DEFAULT_PROFILE})",
    )
    parser.add_argument("--manifests", default=str(REPO / "k8s"), help="kustomization directory")
    parser.add_argument(
        "--services",
        default=str(REPO / "services"),
        help="build context of the service images on Minikube (default: services/)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the rollout (up) or the deletion (down); default "
        f"{DEFAULT_TIMEOUT:g}",
    )
    parser.add_argument(
        "--port",
        action="append",
        type=port_override,
        default=[],
        metavar="SERVICE=PORT",
        help="open: forward this UI to another local port (e.g. frontend=5001; repeatable)",
    )
    parser.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the Secrets' values (never printed otherwise)",
    )
    return parser  # fmt: skip


def port_override(text: str) -> tuple[str, int]:
    service, _, port = text.partition("=")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected SERVICE=PORT (frontend=5001), not {text!r}")
    return service, int(port)


def run(args: argparse.Namespace) -> int:
    """One command; its exit status (`status` says whether everything is ready)."""
    # Every command, `open` too, checks the tools and the manifests first.
    deployment = Deployment(args)
    if args.command == "preflight":
        deployment.preflight()
    elif args.command == "up":
        deployment.up()
    elif args.command == "status":
        return deployment.status()
    elif args.command == "down":
        deployment.down()
    elif args.command == "open":
        open_uis(deployment.kubectl, dict(args.port))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["totals"]:
        # docs/kubernetes.md's resource table; renders k8s/ only, needs no cluster.
        from .totals import main as totals

        return totals(argv[1:])
    args = parse(argv)
    try:
        return run(args)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
