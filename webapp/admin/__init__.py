from flask import Blueprint

bp = Blueprint("admin", __name__)

# Routes register themselves on bp when their modules are imported.
from . import auth, dashboard, issues, sending, subscribers  # noqa: E402,F401
