"""Bounded waiting for tests; the implementation is shared with the local stack.

Reads no environment variables.
"""

from stack.wait import GiveUp, PollTimeout, free_port, poll_until

__all__ = ["GiveUp", "PollTimeout", "free_port", "poll_until"]
