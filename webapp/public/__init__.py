from flask import Blueprint

bp = Blueprint("public", __name__)

from . import site, views  # noqa: E402,F401  (routes register themselves on bp)
