"""WSGI entry point for gunicorn: `gunicorn webapp.wsgi:app`."""

from .cli import app_or_exit

app = app_or_exit(check=True)
