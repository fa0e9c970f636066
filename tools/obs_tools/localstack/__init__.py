"""The local stack: runs the services and the real observability backends on one
machine under supervisord, for `make demo`, `make services` and the e2e tests.

Reads no environment variables on import; see components.py for what each part reads.
"""
