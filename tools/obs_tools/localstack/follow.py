"""Follow log files and print their new lines live, each prefixed with its program's
name, as `docker compose up` does. `make services` uses it so that the terminal shows
both services' log lines while they also go to <run dir>/logs/.

Reads NO_COLOR: set, the prefixes are never colored; otherwise they are colored when the
output is a terminal.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TextIO

COLORS = ("36", "33", "35", "32", "34")  # cyan, yellow, magenta, green, blue


class _Tail:
    """One file: where we are in it, and the bytes of a line not finished yet."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self.inode: int | None = None
        self.partial = b""

    def read_lines(self) -> list[str]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if self.inode is not None and (stat.st_ino != self.inode or stat.st_size < self.offset):
            # Rotated (supervisord renames the file) or truncated: start the new file.
            self.offset = 0
            self.partial = b""
        self.inode = stat.st_ino
        if stat.st_size <= self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [line.decode("utf-8", errors="replace") for line in lines]


class LogFollower(threading.Thread):
    """Print lines appended to `files` ({name: path}) after `offsets` (default: end)."""

    def __init__(
        self,
        files: dict[str, Path],
        out: TextIO | None = None,
        *,
        offsets: dict[str, int] | None = None,
        interval: float = 0.2,
    ) -> None:
        super().__init__(name="log-follower", daemon=True)
        self.out = out or sys.stdout
        self.interval = interval
        offsets = offsets or {}
        self.tails = {
            name: _Tail(Path(path), offsets.get(name, _size(Path(path))))
            for name, path in files.items()
        }
        width = max(map(len, files), default=0)
        color = hasattr(self.out, "isatty") and self.out.isatty() and not os.environ.get("NO_COLOR")
        self.prefixes = {}
        for index, name in enumerate(files):
            label = f"{name:<{width}} |"
            self.prefixes[name] = (
                f"\033[{COLORS[index % len(COLORS)]}m{label}\033[0m" if color else label
            )
        self._stopping = threading.Event()

    def poll(self) -> None:
        """Print every complete line written since the last poll."""
        for name, tail in self.tails.items():
            for line in tail.read_lines():
                self.out.write(f"{self.prefixes[name]} {line}\n")
        self.out.flush()

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=5)
        self.poll()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_offsets(files: dict[str, Path]) -> dict[str, int]:
    """Where each file ends now: follow from here to show only this run's lines."""
    return {name: _size(Path(path)) for name, path in files.items()}
