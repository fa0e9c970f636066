"""What the tools share: repository paths, pinned versions, bounded waiting, managed
processes. Reads no environment variables on import."""
