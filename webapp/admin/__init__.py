from flask import Blueprint

bp = Blueprint("admin", __name__)

# Routes register themselves on bp when their modules are imported.
from . import (  # noqa: E402,F401
    articles,
    auth,
    dashboard,
    issues,
    readership,
    sending,
    settings,
    subscribers,
    topics,
)
