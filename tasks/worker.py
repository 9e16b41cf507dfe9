"""The worker's entry point, `celery -A tasks.worker worker`: the app is built by `webapp.entry`.

Celery's `-A` looks for a module attribute named `app` first, so `app` is the Celery app
and the Flask app is `flask_app`.
"""

from celery.signals import worker_process_init

from webapp.entry import app_or_exit
from webapp.extensions import db

flask_app = app_or_exit(check=True)
app = celery = flask_app.extensions["celery"]

# The startup check opened a database connection in this (parent) process. Prefork
# children inherit it, and two processes on one socket corrupt each other's queries.
with flask_app.app_context():
    db.engine.dispose()


@worker_process_init.connect
def _fresh_connections(**_):
    """Each child opens its own connections (close=False: leave the parent's alone)."""
    with flask_app.app_context():
        db.engine.dispose(close=False)
