from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app

bp = Blueprint("admin", __name__)


def staff_zone() -> ZoneInfo:
    """The staff time zone (`TIMEZONE`): every time on a staff page is shown in it."""
    return ZoneInfo(current_app.config["TIMEZONE"])


@bp.app_template_filter("staff_time")
def staff_time(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored time (UTC; SQLite hands it back naive) in the staff time zone."""
    if moment is None:
        return "—"
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(staff_zone()).strftime(fmt)


@bp.app_context_processor
def _zone_name() -> dict:
    return {"staff_zone_name": current_app.config["TIMEZONE"]}


# Routes register themselves on bp when their modules are imported.
from . import (  # noqa: E402,F401
    api,
    articles,
    auth,
    dashboard,
    identity,
    issues,
    readers,
    readership,
    review,
    sending,
    settings,
    subscribers,
    topics,
)
