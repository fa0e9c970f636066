"""How to reach the deployed UIs: `make open` (a kubectl port-forward from 127.0.0.1 to
each UI of contract.UIS, held until Ctrl-C) and the URLs and logins that it and the end
of `make up` print. Logins are never printed: it says which Secret holds them.

A local port that is taken (macOS's AirPlay Receiver listens on :5000) is skipped with a
warning naming the option that moves it (--port SERVICE=PORT); the other UIs open. So is
a UI whose forward does not start (its Service is missing, or has no running pod), with
kubectl's own error; nothing at all is forwarded only if every UI fails. A
port-forward that stops is started again; the others keep running. kubectl's forward
outlives a replaced pod and stops ("lost connection to pod") at the first connection
through it after that (seen with kubectl v1.34.4 on a real node), so the user's next
request is the one that reaches the new pod.

Reads no environment variables (kubectl reads KUBECONFIG).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from obs_tools.common.wait import GiveUp, PollTimeout, poll_until, port_in_use

from .console import say
from .contract import UI, UIS
from .kubectl import DeployError, Kubectl

# A forward that cannot be brought back this many times in a row is given up.
RESTART_ATTEMPTS = 3


@dataclass
class Forward:
    ui: UI
    port: int  # the local one
    process: subprocess.Popen
    message: str | None = None  # why it stopped, once read


def local_ports(overrides: dict[str, int] | None = None) -> dict[str, int]:
    """Local port per UI service name: the Service's own port unless overridden."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - {ui.service for ui in UIS})
    if unknown:
        raise DeployError(
            f"--port names no UI: {', '.join(unknown)} (UIs: "
            + ", ".join(ui.service for ui in UIS)
            + ")"
        )
    return {ui.service: overrides.get(ui.service, ui.port) for ui in UIS}


def print_access(
    profile: str | None, forwarded: bool = False, ports: dict[str, int] | None = None
) -> None:
    ports = ports or local_ports()
    if not forwarded:
        say("Reach the UIs with `make open` (port-forwards until Ctrl-C), then:")
    for ui in UIS:
        if ui.service in ports:
            say(f"  {ui.title:<24} http://127.0.0.1:{ports[ui.service]}{ui.path}")
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


def open_uis(kubectl: Kubectl, overrides: dict[str, int] | None = None) -> None:
    """Forward every UI whose local port is free until Ctrl-C."""
    ports = free_ports(local_ports(overrides))
    forwards: list[Forward] = []
    try:
        # Appended one by one: if a later one fails to start, `finally` still stops
        # the ones already running.
        for ui in UIS:
            if ui.service in ports:
                forwards.append(start_forward(kubectl, ui, ports[ui.service]))
        forwards = listening_forwards(forwards)
        print_access(None, forwarded=True, ports={f.ui.service: f.port for f in forwards})
        say("Forwarding until Ctrl-C.")
        watch(kubectl, forwards)
    except KeyboardInterrupt:
        say("Stopped forwarding.")
    finally:
        stop(forwards)


def free_ports(ports: dict[str, int]) -> dict[str, int]:
    """The UIs whose local port is free; a warning for each one that is taken."""
    free = {}
    for ui in UIS:
        port = ports[ui.service]
        if port_in_use(port):
            say(
                f"warning: local port {port} is in use: {ui.title} is not forwarded. Pick "
                f'another: make open UP_ARGS="--port {ui.service}=PORT" (on macOS, :5000 '
                "is the AirPlay Receiver's: System Settings > General > AirDrop & Handoff)"
            )
        else:
            free[ui.service] = port
    if not free:
        raise DeployError("every local port is in use: nothing to forward (see the warnings)")
    return free


def start_forward(kubectl: Kubectl, ui: UI, port: int) -> Forward:
    argv = kubectl.argv(
        ["port-forward", "-n", ui.namespace, f"svc/{ui.service}",
         f"{port}:{ui.port}", "--address", "127.0.0.1"]
    )  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return Forward(ui, port, process)


def exit_message(forward: Forward) -> str:
    """Why a stopped port-forward stopped: its stderr, read once (a pipe reads empty
    the second time)."""
    if forward.message is None:
        error = forward.process.stderr.read().strip() if forward.process.stderr else ""
        forward.message = (
            f"port-forward to {forward.ui.title} exited {forward.process.returncode}: "
            + (error or "(no message)")
        )
    return forward.message


def wait_listening(forward: Forward) -> None:
    def listening():
        if forward.process.poll() is not None:
            # GiveUp, not DeployError: poll_until takes any other exception for "not
            # yet", would call again and read an already drained stderr.
            raise GiveUp(exit_message(forward))
        return port_in_use(forward.port)

    try:
        poll_until(listening, f"port-forward to {forward.ui.title}", 20)
    except (GiveUp, PollTimeout) as exc:
        raise DeployError(str(exc)) from None


def listening_forwards(forwards: list[Forward]) -> list[Forward]:
    """The forwards that listen; each one that does not is stopped, with a warning."""
    ready, failures = [], []
    for forward in forwards:
        try:
            wait_listening(forward)
        except DeployError as exc:
            stop([forward])
            failures.append(str(exc))
            say(
                f"warning: {exc}; {forward.ui.title} is not forwarded (once its pod runs, "
                "run make open again)"
            )
        else:
            ready.append(forward)
    if not ready:
        raise DeployError("no UI could be forwarded:\n  " + "\n  ".join(failures))
    return ready


def watch(kubectl: Kubectl, forwards: list[Forward]) -> None:
    """Never returns: a port-forward that stops is started again (its pod restarted);
    one that cannot be brought back is given up with a warning, the others stay."""
    failures = {f.ui.service: 0 for f in forwards}
    while forwards:
        for forward in [f for f in forwards if f.process.poll() is not None]:
            say(f"warning: {exit_message(forward)}; starting it again")
            restarted = start_forward(kubectl, forward.ui, forward.port)
            forwards[forwards.index(forward)] = restarted
            try:
                wait_listening(restarted)
            except DeployError as exc:
                stop([restarted])  # one that timed out may still run
                failures[forward.ui.service] += 1
                say(f"warning: {exc}")
                if failures[forward.ui.service] >= RESTART_ATTEMPTS:
                    say(f"warning: gave up on {forward.ui.title}; the others stay open")
                    forwards.remove(restarted)
                continue
            failures[forward.ui.service] = 0
            say(f"  {forward.ui.title}: forwarding again on 127.0.0.1:{forward.port}")
        # A check a second is soon enough for a person, and cheap.
        time.sleep(1)
    raise DeployError("every port-forward stopped")


def stop(forwards: list[Forward]) -> None:
    # Terminate all first, then wait: the forwards stop in parallel, not one by one.
    for forward in forwards:
        forward.process.terminate()
    for forward in forwards:
        try:
            forward.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            forward.process.kill()
            forward.process.wait(timeout=5)
