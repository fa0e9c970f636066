"""What the deploy commands print, shared by deployment.py, minikube.py and access.py.
Reads no environment variables.
"""

from __future__ import annotations


def say(line: str) -> None:
    # Flushed: `make up` runs for minutes, and its progress must show as it happens
    # (also when stdout is a pipe, as under make or a test).
    print(line, flush=True)


def indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
