"""WSGI entry point for gunicorn: `gunicorn webapp.wsgi:app`."""

from .entry import app_or_exit

app = app_or_exit(check=True)
