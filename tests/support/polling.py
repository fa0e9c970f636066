"""Bounded waiting for tests; the implementation is shared with the local stack.

Reads no environment variables.
"""

from obs_tools.common.wait import GiveUp, PollTimeout, free_port, poll_until

__all__ = ["GiveUp", "PollTimeout", "free_port", "poll_until"]
