"""The only place that builds the app for the worker: `celery -A tasks.worker worker`.

Celery's `-A` looks for a module attribute named `app` first, so `app` is the Celery app
and the Flask app is `flask_app`.
"""

from webapp.cli import app_or_exit

flask_app = app_or_exit(check=True)
app = celery = flask_app.extensions["celery"]
