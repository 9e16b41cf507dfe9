"""The only place that builds the app for the worker: `celery -A tasks.worker worker`."""

from webapp.cli import app_or_exit

app = app_or_exit(check=True)
celery = app.extensions["celery"]
