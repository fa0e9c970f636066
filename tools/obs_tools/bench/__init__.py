"""`make bench`: the telemetry's cost measured side by side with the bare app.

run.py drives the frontend -> backend chain with wrk and writes JSON; report.py turns
that JSON into docs/benchmarks.md and docs/benchmarks.png. Reads no environment
variables on import.
"""
