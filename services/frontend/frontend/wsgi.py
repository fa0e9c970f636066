"""WSGI entry point for gunicorn: `frontend.wsgi:app`. Reads the environment via create_app."""

from frontend import create_app

app = create_app()
