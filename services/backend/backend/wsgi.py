"""WSGI entry point for gunicorn: `backend.wsgi:app`. Reads the environment via create_app."""

from backend import create_app

app = create_app()
