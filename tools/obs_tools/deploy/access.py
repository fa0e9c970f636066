"""How to reach the deployed UIs: `make open` (a kubectl port-forward from 127.0.0.1 to
each UI of contract.UIS, held until Ctrl-C) and the URLs and logins that it and the end
of `make up` print. Logins are never printed: it says which Secret holds them.

Reads no environment variables (kubectl reads KUBECONFIG).
"""

from __future__ import annotations

import subprocess
import time

from obs_tools.common.wait import PollTimeout, poll_until, port_in_use

from .console import say
from .contract import UI, UIS
from .kubectl import DeployError, Kubectl

Forward = tuple[UI, subprocess.Popen]


def print_access(profile: str | None, forwarded: bool = False) -> None:
    if not forwarded:
        say("Reach the UIs with `make open` (port-forwards until Ctrl-C), then:")
    for ui in UIS:
        say(f"  {ui.title:<24} http://127.0.0.1:{ui.port}{ui.path}")
    # Values are never printed: say where to read them.
    say("Logins (read from the Secrets; `up --show-secrets` prints every value):")
    say(
        "  Grafana (user, password): kubectl -n obs-monitoring get secret grafana-admin -o "
        """go-template='{{index .data "admin-user" | base64decode}} """
        """{{index .data "admin-password" | base64decode}}{{"\\n"}}'"""
    )
    say(
        "  Kibana: user elastic, password: kubectl -n obs-monitoring get secret "
        "elasticsearch-credentials -o jsonpath='{.data.elastic-password}' | base64 -d"
    )


def open_uis(kubectl: Kubectl) -> None:
    """Forward every UI's port until Ctrl-C, or until a port-forward stops."""
    busy = [ui for ui in UIS if port_in_use(ui.port)]
    if busy:
        raise DeployError(
            "local ports already in use: " + ", ".join(f"{ui.port} ({ui.title})" for ui in busy)
        )
    forwards: list[Forward] = []
    try:
        # Appended one by one: if a later one fails to start, `finally` still stops
        # the ones already running.
        for ui in UIS:
            forwards.append((ui, start_forward(kubectl, ui)))
        for ui, process in forwards:
            wait_listening(ui, process)
        print_access(None, forwarded=True)
        say("Forwarding until Ctrl-C.")
        watch(forwards)
    except KeyboardInterrupt:
        say("Stopped forwarding.")
    finally:
        stop(forwards)


def start_forward(kubectl: Kubectl, ui: UI) -> subprocess.Popen:
    argv = kubectl.argv(
        ["port-forward", "-n", ui.namespace, f"svc/{ui.service}",
         f"{ui.port}:{ui.port}", "--address", "127.0.0.1"]
    )  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_listening(ui: UI, process: subprocess.Popen) -> None:
    def listening():
        if process.poll() is not None:
            raise DeployError(f"port-forward to {ui.title} exited: {process.stderr.read().strip()}")
        return port_in_use(ui.port)

    try:
        poll_until(listening, f"port-forward to {ui.title}", 20)
    except PollTimeout as exc:
        raise DeployError(str(exc)) from None


def watch(forwards: list[Forward]) -> None:
    """Never returns: raises when a port-forward stops, rather than leave a URL listed
    that no longer answers."""
    while True:
        for ui, process in forwards:
            if process.poll() is not None:
                raise DeployError(
                    f"port-forward to {ui.title} stopped: {process.stderr.read().strip()}"
                )
        time.sleep(1)


def stop(forwards: list[Forward]) -> None:
    # Terminate all first, then wait: the forwards stop in parallel, not one by one.
    for _, process in forwards:
        process.terminate()
    for _, process in forwards:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
