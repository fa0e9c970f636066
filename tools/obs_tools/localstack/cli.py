"""Command line of the local stack: obs-stack {demo,services,mail}.

Reads: OBS_RUN_DIR (default <repo>/.run), OBS_ES_HEAP, NO_COLOR (`services`: plain log
prefixes), and for `mail` the mail dir of the last `make demo` run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from ..common.versions import REPO
from ..common.wait import port_in_use
from . import mailcatcher, runner
from .components import ES_USER, LocalStack, Ports
from .follow import LogFollower, log_offsets


def run_dir() -> Path:
    return Path(os.environ.get("OBS_RUN_DIR", REPO / ".run"))


def _check_ports(ports: Ports, names: list[str]) -> None:
    taken = [(n, p) for n, p in ports.items() if n in names and port_in_use(p)]
    if taken:
        listing = ", ".join(f"{p} ({n})" for n, p in taken)
        sys.exit(
            f"error: port(s) already in use on 127.0.0.1: {listing}.\n"
            "Stop whatever holds them (`ss -ltnp | grep PORT` shows it), or a previous "
            "`make demo` still running."
        )


def _wait_for_ctrl_c(stack: LocalStack, supervisor) -> None:
    def on_term(*_):
        raise KeyboardInterrupt

    # SIGTERM (e.g. from `kill`) stops the stack as cleanly as Ctrl-C does. SIGINT is
    # set explicitly too: a shell starting us in the background would have it ignored.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        while supervisor.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                supervisor.proc.wait(timeout=1)
        print(f"supervisord exited on its own: see {stack.run_dir / 'supervisord.log'}")
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        runner.stop(stack, supervisor)
        print("stopped.", flush=True)


def services(_args) -> None:
    stack = LocalStack(run_dir(), services_only=True)
    _check_ports(stack.ports, ["frontend", "backend"])
    print(
        "Starting frontend and backend (spans are not exported: no Jaeger in this mode) ...",
        flush=True,
    )
    logs = {name: stack.log_dir / f"{name}.log" for name in ("frontend", "backend")}
    # Only this run's lines: supervisord appends to the files of earlier runs.
    follower = LogFollower(logs, offsets=log_offsets(logs))
    supervisor = runner.start(stack)
    print(
        f"\n  frontend  {stack.url('frontend')}/\n  backend   {stack.url('backend')}/\n"
        f"  logs      {stack.log_dir}/ (and below, live)\n\nCtrl-C to stop.\n",
        flush=True,
    )
    follower.start()
    try:
        _wait_for_ctrl_c(stack, supervisor)
    finally:
        follower.stop()


def demo(_args) -> None:
    from obs_tools.loadgen.cli import background_argv

    stack = LocalStack(
        run_dir(),
        service_env_overrides={"CHAOS_CRASH_ENABLED": "true"},
        traffic_argv=background_argv("http://127.0.0.1:5000"),
    )
    _check_ports(stack.ports, [n for n, _ in stack.ports.items()])
    print(f"Starting the local stack in {stack.run_dir} ...", flush=True)
    supervisor = runner.start(stack)
    supervisor.start_program("traffic")
    u = stack.url
    print(
        f"""
The stack is up. Where to look:

  Frontend        {u("frontend")}/          (try /items, /error, /slow, /crash)
  Backend         {u("backend")}/
  Prometheus      {u("prometheus")}/classic/graph     alerts: {u("prometheus")}/classic/alerts
  Alertmanager    {u("alertmanager")}/
  Jaeger          {u("jaeger_query")}/search       (the UI; the query API is under /api/)
  Elasticsearch   {u("elasticsearch")}/obs-logs-*/_search
                  user {ES_USER}, password in {stack.es_password_file}
  Caught e-mail   make mail            (list)   make mail N=1   (read one)
  Logs            {stack.log_dir}/

Gentle background traffic is running (2 requests/s). To see the crash-loop alert reach
the mailbox, crash the backend three times, about 10 s apart so that Prometheus sees
each restart: `curl {u("backend")}/crash`. The mail arrives about 2 minutes later.
Ctrl-C stops everything.""",
        flush=True,
    )
    _wait_for_ctrl_c(stack, supervisor)


def mail(args) -> None:
    maildir = Path(args.maildir) if args.maildir else run_dir() / "mail"
    if args.number:
        print(mailcatcher.render_message(maildir, args.number))
    else:
        print(mailcatcher.render_listing(maildir))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="obs-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="the whole local stack").set_defaults(func=demo)
    sub.add_parser("services", help="frontend and backend only").set_defaults(func=services)
    mail_parser = sub.add_parser("mail", help="list caught e-mail, or show one")
    mail_parser.add_argument("number", nargs="?", type=int, help="message number to show")
    mail_parser.add_argument("--maildir", help="default: <run dir>/mail")
    mail_parser.set_defaults(func=mail)
    args = parser.parse_args(argv)
    args.func(args)
