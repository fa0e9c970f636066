"""One load generator behind the course's five traffic scripts.

Reads TARGET_URL (default http://localhost:5000) when --target is not given, and
OBS_RUN_DIR for the background process's pid and status files (default <repo>/.run).
"""
