"""The content of the users' views, as code: Grafana dashboards (grafana/dashboards/) and
Kibana saved objects (kibana/), written by `make views` (obs-views) and checked by
tests/config/test_views.py to be exactly what is committed.

Reads no environment variables.
"""
