"""Staff pages for readers: the list (search, filters, keyset pages), CSV import and export."""

from __future__ import annotations

from flask import Response, current_app, render_template, request
from flask_login import current_user

from .. import directory, queue
from ..errors import describe
from ..extensions import db
from ..models import SubscriberStatus, Topic
from ..security import id_arg
from ..subscriber_csv import CsvImportError, export_subscribers, import_subscribers
from ..transactions import after_commit, transaction
from . import bp
from .auth import admin_only
from .forms import SubscriberImportForm


def _filters() -> dict:
    status = request.args.get("status") or None
    topic_id = id_arg("topic")
    return {
        "search": request.args.get("q", "").strip(),
        "status": SubscriberStatus(status) if status in set(SubscriberStatus) else None,
        "topic_id": topic_id if topic_id and db.session.get(Topic, topic_id) else None,
    }


@bp.get("/subscribers")
@admin_only
def subscribers():
    filters = _filters()
    page = directory.list_subscribers(**filters, after_id=id_arg("after"))
    return render_template(
        "admin/subscribers.html",
        page=page,
        filters=filters,
        statuses=list(SubscriberStatus),
        by_status=directory.counts_by_status(),
        by_topic=directory.counts_by_topic(),
    )


@bp.get("/subscribers/export.csv")
@admin_only
def export_csv():
    filters = _filters()
    body = export_subscribers(status=filters["status"], topic_id=filters["topic_id"])
    return Response(
        "\ufeff" + body,  # a BOM, so that Excel reads the Chinese names as UTF-8
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'},
    )


@bp.route("/subscribers/import", methods=["GET", "POST"])
@admin_only
def import_csv():
    form = SubscriberImportForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("admin/subscribers_import.html", form=form, report=None), status
    upload = form.document.data
    consented = form.consent.data == "consented"
    try:
        with transaction():
            report = import_subscribers(
                upload.read(),
                consented=consented,
                source=f"csv import by {current_user.email}",
            )
            if report.confirmation_ids:
                after_commit(lambda: queue.send_confirmations(report.confirmation_ids))
    except CsvImportError as exc:
        form.document.errors.append(f"{upload.filename}: {describe(exc)}")
        return render_template("admin/subscribers_import.html", form=form, report=None), 400
    current_app.logger.info("CSV import by %s: %s created", current_user.email, report.created)
    return render_template(
        "admin/subscribers_import.html", form=SubscriberImportForm(), report=report
    )
