"""Command lines of the traffic scripts: obs-loadgen MODE [args].

Modes match the scripts in scripts/: quick, generate, background, spike, continuous,
plus `run` (the process behind `background` and the demo's traffic).

Reads TARGET_URL (default http://localhost:5000), OBS_RUN_DIR (default <repo>/.run,
where the background process keeps its pid, status and log files) and LOADGEN_PROG
(the script name shown in usage messages).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from obs_tools.common.paths import REPO

from .engine import LoadSpec, quick_plan, run
from .stats import RunStats, format_table

DEFAULT_TARGET = "http://localhost:5000"
# Requests per second of continuous_traffic.sh; documented in docs/local-stack.md.
INTENSITIES = {"low": 1.0, "medium": 5.0, "high": 20.0}
BACKGROUND_RATE = 2.0


def _number(convert, noun: str, minimum: float, inclusive: bool):
    """An argparse type: `convert`ed text, finite, above (or at) `minimum`."""
    bound = f">= {minimum:g}" if inclusive else f"greater than {minimum:g}"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        # NaN fails both comparisons, so it is rejected with the rest.
        above = value >= minimum if inclusive else value > minimum
        if not above or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number {bound}")
        return value

    return parse


positive_int = _number(int, "a whole number", 0, inclusive=False)
positive_float = _number(float, "a number", 0, inclusive=False)
non_negative_float = _number(float, "a number", 0, inclusive=True)


def _parser(mode: str, description: str) -> argparse.ArgumentParser:
    prog = os.environ.get("LOADGEN_PROG") or f"obs-loadgen {mode}"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--target",
        default=os.environ.get("TARGET_URL", DEFAULT_TARGET),
        help="base URL of the frontend (env TARGET_URL; default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable endpoint mix")
    return parser


def _crash_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--crash-weight",
        type=non_negative_float,
        default=0.0,
        help="include /crash with this weight (the other endpoints weigh 100 in all); "
        "off by default",
    )


def _spec(args: argparse.Namespace, **shape) -> LoadSpec:
    """A LoadSpec from the options every mode shares, plus the mode's own `shape`."""
    return LoadSpec(
        args.target,
        crash_weight=getattr(args, "crash_weight", 0.0),
        seed=args.seed,
        **shape,
    )


def _report(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(summary))


def _execute(spec: LoadSpec, as_json: bool, status_file: Path | None = None) -> dict:
    """Run the load with a live progress line; Ctrl-C or SIGTERM ends it with a summary."""
    stats = RunStats()
    live = sys.stderr.isatty() and not as_json

    def progress(current: RunStats) -> None:
        sys.stderr.write("\r" + current.progress_line() + "\x1b[K")
        sys.stderr.flush()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def first_signal(signum: int) -> None:
            stop.set()
            # A second Ctrl-C falls through to Python's default and ends the process.
            loop.remove_signal_handler(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, first_signal, signum)
        await run(spec, stats, progress if live else None, status_file, stop)
        if stop.is_set() and not as_json:
            sys.stderr.write("\ninterrupted: summary so far\n")

    asyncio.run(main())
    if live:
        sys.stderr.write("\n")
    summary = stats.summary()
    summary["target"] = spec.target
    _report(summary, as_json)
    return summary


def _unreachable(summary: dict) -> bool:
    statuses = summary["statuses"]
    return summary["requests"] > 0 and all(not k.isdigit() for k in statuses)


def _exit_for(summary: dict, target: str) -> int:
    if _unreachable(summary):
        print(
            f"error: no request reached {target}. Is the stack running "
            "(`make services` or `make demo`), or is the port-forward up?",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_quick(argv: list[str]) -> int:
    parser = _parser("quick", "Hit every endpoint a few times, errors included, and summarise.")
    args = parser.parse_args(argv)
    spec = _spec(args, plan=quick_plan(), concurrency=4)
    return _exit_for(_execute(spec, args.json), args.target)


def cmd_generate(argv: list[str]) -> int:
    parser = _parser("generate", "Send N requests spread evenly over DURATION seconds.")
    parser.add_argument("requests", metavar="N", type=positive_int, help="number of requests")
    parser.add_argument("duration", metavar="DURATION", type=positive_float, help="seconds")
    parser.add_argument("--concurrency", type=positive_int, default=10)
    _crash_option(parser)
    args = parser.parse_args(argv)
    spec = _spec(
        args,
        count=args.requests,
        rate=args.requests / args.duration,
        concurrency=args.concurrency,
    )
    return _exit_for(_execute(spec, args.json), args.target)


def cmd_spike(argv: list[str]) -> int:
    parser = _parser("spike", "Stress test: THREADS concurrent clients, as fast as possible.")
    parser.add_argument("threads", metavar="THREADS", type=positive_int, help="concurrent clients")
    parser.add_argument("duration", metavar="DURATION", type=positive_float, help="seconds")
    _crash_option(parser)
    args = parser.parse_args(argv)
    if args.threads > 500:
        parser.error("THREADS must be at most 500")
    spec = _spec(args, duration=args.duration, concurrency=args.threads)
    return _exit_for(_execute(spec, args.json), args.target)


def cmd_continuous(argv: list[str]) -> int:
    rates = ", ".join(f"{k}={v:g} req/s" for k, v in INTENSITIES.items())
    parser = _parser("continuous", f"Steady traffic until Ctrl-C ({rates}).")
    parser.add_argument("intensity", choices=sorted(INTENSITIES, key=INTENSITIES.get))
    parser.add_argument("--max-duration", type=positive_float, help="stop after this many seconds")
    _crash_option(parser)
    args = parser.parse_args(argv)
    rate = INTENSITIES[args.intensity]
    spec = _spec(args, rate=rate, duration=args.max_duration, concurrency=max(4, int(rate)))
    return _exit_for(_execute(spec, args.json), args.target)


def cmd_run(argv: list[str]) -> int:
    parser = _parser("run", "The long-running process behind background traffic.")
    parser.add_argument("--rate", type=positive_float, default=BACKGROUND_RATE)
    parser.add_argument("--duration", type=positive_float)
    parser.add_argument("--concurrency", type=positive_int, default=4)
    parser.add_argument("--status-file", type=Path)
    _crash_option(parser)
    args = parser.parse_args(argv)
    spec = _spec(args, rate=args.rate, duration=args.duration, concurrency=args.concurrency)
    _execute(spec, args.json, args.status_file)
    return 0


def background_argv(target: str, rate: float = BACKGROUND_RATE) -> list[str]:
    """The `run` command line used by background_traffic.sh and by `make demo`."""
    return [sys.executable, "-m", "obs_tools.loadgen", "run", "--target", target,
            "--rate", str(rate)]  # fmt: skip


# -- background_traffic.sh -------------------------------------------------------


def _run_dir() -> Path:
    path = Path(os.environ.get("OBS_RUN_DIR", REPO / ".run"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _files() -> dict[str, Path]:
    run_dir = _run_dir()
    return {
        name: run_dir / f"background-traffic.{ext}"
        for name, ext in (("pid", "pid"), ("status", "json"), ("log", "log"), ("lock", "lock"))
    }


def _running_pid(pidfile: Path) -> int | None:
    """The pid in the file if that process is alive and is our load generator."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    # A recycled pid belongs to some other program: not ours to report or kill.
    return pid if b"loadgen" in cmdline and _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not running.
    with contextlib.suppress(FileNotFoundError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _status_text(status_file: Path, pid: int) -> str:
    try:
        s = json.loads(status_file.read_text())
    except (FileNotFoundError, ValueError):
        return f"running (pid {pid}), no statistics yet"
    lat = s["latency_ms"]
    return (
        f"running (pid {pid}) against {s['target']}\n"
        f"  target rate  {s['target_rate']:g} req/s, "
        f"measured {s['requests_per_second']:.2f} req/s\n"
        f"  totals       {s['requests']} requests, {s['errors']} errors "
        f"({s['error_percent']:.1f}%) in {s['elapsed_seconds']:.0f} s\n"
        f"  latency      p50 {lat['p50']} ms, p95 {lat['p95']} ms"
    )


def cmd_background(argv: list[str]) -> int:
    parser = _parser("background", "Background traffic with a pid file: start, status, stop.")
    parser.add_argument("action", choices=["start", "status", "stop"])
    parser.add_argument("--rate", type=positive_float, default=BACKGROUND_RATE)
    args = parser.parse_args(argv)
    files = _files()
    # One start/stop at a time: two `start`s racing must not both launch a process.
    with open(files["lock"], "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pid = _running_pid(files["pid"])
        if args.action == "status":
            if pid is None:
                print("not running")
                return 3  # LSB status code for "not running"
            print(_status_text(files["status"], pid))
            return 0
        if args.action == "start":
            if pid is not None:
                print(f"already running (pid {pid}); not starting another")
                return 0
            return _start(args, files)
        return _stop(pid, files)


def _start(args, files: dict[str, Path]) -> int:
    files["status"].unlink(missing_ok=True)
    argv = [*background_argv(args.target, args.rate), "--status-file", str(files["status"])]
    env = dict(os.environ)
    with open(files["log"], "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # survives the terminal; stop kills its whole group
        )
    files["pid"].write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            files["pid"].unlink(missing_ok=True)
            print(f"error: background traffic exited at once; see {files['log']}", file=sys.stderr)
            return 1
        if files["status"].exists():
            print(f"started (pid {proc.pid}) at {args.rate:g} req/s against {args.target}")
            return 0
        time.sleep(0.1)
    print(f"started (pid {proc.pid}), but no statistics after 10 s; see {files['log']}")
    return 0


def _stop(pid: int | None, files: dict[str, Path]) -> int:
    if pid is None:
        files["pid"].unlink(missing_ok=True)
        print("not running")
        return 0
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    # Reap our own child if this process started it; otherwise init does.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    files["pid"].unlink(missing_ok=True)
    try:
        s = json.loads(files["status"].read_text())
        print(f"stopped (pid {pid}) after {s['requests']} requests, {s['errors']} errors")
    except (FileNotFoundError, ValueError):
        print(f"stopped (pid {pid})")
    return 0


MODES = {
    "quick": cmd_quick,
    "generate": cmd_generate,
    "spike": cmd_spike,
    "continuous": cmd_continuous,
    "background": cmd_background,
    "run": cmd_run,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in MODES:
        print(f"usage: obs-loadgen {{{','.join(MODES)}}} [args]", file=sys.stderr)
        return 2
    return MODES[argv[0]](argv[1:])
