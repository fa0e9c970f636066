"""A black-hole endpoint: a TCP server on 127.0.0.1 that accepts connections and never
answers, so a client's request hangs until its own timeout (an OTLP collector that
stopped responding). Used by the benchmark's "black-holed exporter" variant and the
resilience tests.

Reads no environment variables.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class BlackHole:
    """drain=True reads and discards what is sent (the client's send never blocks, it
    waits for an answer); drain=False never reads (a large request blocks in send)."""

    def __init__(self, drain: bool = True) -> None:
        self.drain = drain
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        # A timeout, so that close() ends this thread within a bound.
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.held.append(conn)
            if self.drain:
                threading.Thread(target=self._drain, args=(conn,), daemon=True).start()
            else:
                conn.setblocking(False)

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        for conn in self.held:
            conn.close()
