from flask import Blueprint

bp = Blueprint("admin", __name__)

# Routes register themselves on bp when their modules are imported.
from . import articles, auth, dashboard, issues, sections, sending, subscribers  # noqa: E402,F401
