"""Staff pages for readers: the list (search, filters, keyset pages), CSV import and export."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from itertools import islice

from flask import (
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit, directory, queue, subscriber_imports
from ..errors import describe
from ..i18n import LOCALES
from ..models import SubscriberImport, SubscriberStatus
from ..security import id_arg
from ..spreadsheet import formula_safe
from ..subscriber_csv import CsvImportError
from ..transactions import after_commit, transaction
from . import bp
from .auth import admin_only
from .forms import ActionForm, SubscriberImportForm
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
    """Upload a readers CSV: the request only stores the file and queues its dry run, so a
    file of any size answers at once; the import's own page shows the progress and report."""
    form = SubscriberImportForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("admin/subscribers_import.html", form=form, **_recent()), status
    upload = form.document.data
    with transaction():
        job = subscriber_imports.create_import(
            upload.read(),
            upload.filename or "",
            consented=form.consent.data == "consented",
            staff_email=current_user.email,
        )
        job_id = job.id
        after_commit(lambda: queue.check_subscriber_import(job_id))
    return redirect(url_for("admin.import_page", import_id=job_id))


def _recent() -> dict:
    return {"imports": subscriber_imports.recent(), "statuses": subscriber_imports.STATUS_LABELS}


def _job(import_id: int, *, with_outcomes: bool = False) -> SubscriberImport:
    job = subscriber_imports.get(import_id, with_outcomes=with_outcomes)
    if job is None:
        abort(404)
    return job


@bp.get("/subscribers/import/<int:import_id>")
@admin_only
def import_page(import_id: int):
    """An import's progress, then its dry-run report (and the button to import), then the
    final report beside the dry run's figures."""
    job = _job(import_id, with_outcomes=True)
    return render_template(
        "admin/subscribers_import_job.html",
        job=job,
        form=ActionForm(),
        percent=subscriber_imports.percent(job),
        dry=subscriber_imports.counts_of(job, dry_run=True),
        done=subscriber_imports.counts_of(job, dry_run=False),
        error=subscriber_imports.error_of(job),
        problems=list(islice(subscriber_imports.outcomes(job, problems_only=True), SHOWN_ROWS)),
        shown_rows=SHOWN_ROWS,
        labels=subscriber_imports.OUTCOME_LABELS,
        statuses=subscriber_imports.STATUS_LABELS,
        has_file=subscriber_imports.has_file(job),
    )


SHOWN_ROWS = 1000  # rows with something to say, on the page; report.csv has every row


@bp.get("/subscribers/import/<int:import_id>/progress.json")
@admin_only
def import_progress(import_id: int):
    job = _job(import_id)
    return jsonify(
        status=job.status.value,
        status_label=str(subscriber_imports.STATUS_LABELS[job.status]),
        percent=subscriber_imports.percent(job),
        read=job.rows_read,
        done=job.rows_done,
        total=job.rows_total,
    )


@bp.post("/subscribers/import/<int:import_id>/run")
@admin_only
def import_run(import_id: int):
    """Staff read the dry run and import: the worker does it with the same code."""
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        with transaction():
            subscriber_imports.start_import(import_id)
            after_commit(lambda: queue.run_subscriber_import(import_id))
    except CsvImportError as exc:
        flash(describe(exc), "error")
    return redirect(url_for("admin.import_page", import_id=import_id))


@bp.get("/subscribers/import/<int:import_id>/report.csv")
@admin_only
def import_report_csv(import_id: int):
    """Every row's outcome (the latest run's), in the staff member's language."""
    job = _job(import_id, with_outcomes=True)
    labels = subscriber_imports.OUTCOME_LABELS

    def lines():
        yield "\ufeff" + _csv_line([_("行"), "email", _("结果"), _("说明")])
        for row in subscriber_imports.outcomes(job):
            notes = " ".join(describe(note) for note in row.notes)
            yield _csv_line([str(row.line), row.email, str(labels[row.outcome]), notes])

    return Response(
        stream_with_context(lines()),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="readers-import-{import_id}-report.csv"'
        },
    )


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerow(
        [formula_safe(cell) for cell in cells]
    )
    return out.getvalue()
