"""A TCP relay: accepts on one address and copies bytes both ways to another.

The real node's pods reach the API server through it (tests/support/real_node.py): the
test control plane listens on 127.0.0.1 only, which a pod's network namespace cannot
reach, so the relay listens on the pod bridge's gateway address and the `kubernetes`
Service's endpoint points there. TLS passes through untouched: pods still verify the
API server's own certificate.

  python tcp_relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT

Prints "listening on HOST:PORT" once bound; stops on SIGTERM. Reads no environment
variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


def _handler(target_host: str, target_port: int):
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.wait_for(
                asyncio.open_connection(target_host, target_port), timeout=10
            )
        except (OSError, TimeoutError):
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    return handle


async def relay(listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
    server = await asyncio.start_server(
        _handler(target_host, target_port), listen_host, listen_port
    )
    print(f"listening on {listen_host}:{listen_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    listen_host, listen_port, target_host, target_port = argv
    asyncio.run(relay(listen_host, int(listen_port), target_host, int(target_port)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
