"""Staff pages for readers: the list (search, filters, keyset pages), CSV import and export."""

from __future__ import annotations

from dataclasses import asdict

from flask import Response, current_app, render_template, request, stream_with_context
from flask_login import current_user

from .. import audit, directory, queue
from ..errors import describe
from ..i18n import LOCALES
from ..models import SubscriberStatus
from ..security import id_arg
from ..subscriber_csv import CsvImportError, import_subscribers
from ..transactions import after_commit, transaction
from . import bp
from .auth import admin_only
from .forms import SubscriberImportForm
from .readers import ButtonForm, filter_args, list_filters


@bp.get("/subscribers")
@admin_only
def subscribers():
    filters = list_filters()
    page = directory.list_subscribers(**asdict(filters), after_id=id_arg("after"))
    return render_template(
        "admin/subscribers.html",
        page=page,
        filters=filters,
        filter_args=filter_args(filters),
        filtered=bool(filter_args(filters)),
        statuses=list(SubscriberStatus),
        locales=LOCALES,
        by_status=directory.counts_by_status(),
        by_topic=directory.counts_by_topic(),
        bulk_form=ButtonForm(),
    )


@bp.get("/subscribers/export.csv")
@admin_only
def export_csv():
    """The readers the list's filter matches, as CSV, streamed (flat memory at any size)."""
    filters = list_filters()
    with transaction():
        shown = {k: v for k, v in filter_args(filters).items() if k != "q"}
        audit.record("readers-export", detail=f"CSV export; filter {shown}")
    return Response(
        stream_with_context(directory.csv_lines(filters)),
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
