"""Staff pages for one reader (admins only), and bulk changes to a filtered list of readers.

Every action is a POST in two steps (`confirmation.confirmed`): the first shows what will
happen, and only the confirming POST does it, through the `subscriptions` functions, with
an audit entry and the reader's own event. Plain forms, so it all works without JavaScript.
"""

from __future__ import annotations

import json
import re

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm

from .. import audit, bulk, directory, queue, subscriptions
from ..confirmation import confirmed
from ..errors import BulletinError, describe
from ..extensions import db
from ..i18n import LOCALES
from ..models import (
    BulkChange,
    BulkChangeStatus,
    EventSource,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
    Topic,
)
from ..security import MAX_ID
from ..transactions import after_commit, transaction
from . import bp
from .auth import admin_only

STAFF = EventSource.STAFF
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ButtonForm(FlaskForm):
    """Only a CSRF token: the reader page's action buttons."""


def list_filters(values=None) -> directory.Filters:
    """The readers list's filters from a query string or a form (unknown values ignored)."""
    values = request.args if values is None else values
    status = values.get("status") or None
    topic_id = _id_value(values.get("topic"))
    locale = values.get("locale") or None
    return directory.Filters(
        # Control characters cannot be in an address or a name (and PostgreSQL refuses NUL).
        search=_CONTROL.sub("", values.get("q") or "").strip()[:200],
        status=SubscriberStatus(status) if status in set(SubscriberStatus) else None,
        topic_id=topic_id if topic_id and db.session.get(Topic, topic_id) else None,
        locale=locale if locale in LOCALES else None,
    )


def _id_value(value: str | None) -> int | None:
    """An id from a query string or a form: None when empty, 400 when not a possible id
    (as `security.id_arg`)."""
    if value in (None, ""):
        return None
    if not value.isdigit() or int(value) > MAX_ID:
        abort(400)
    return int(value)


def filter_args(filters: directory.Filters) -> dict:
    """The filters as the list's query-string arguments (empty ones left out)."""
    args = {
        "q": filters.search,
        "status": filters.status.value if filters.status else None,
        "topic": filters.topic_id,
        "locale": filters.locale,
    }
    return {k: v for k, v in args.items() if v}


# --- one reader ---------------------------------------------------------------------------


def _reader_page(subscriber: Subscriber, *, error: str = "", status: int = 200):
    topics = db.session.query(Topic).order_by(Topic.position, Topic.id).all()
    chosen = {t.id for t in subscriber.topics}
    return render_template(
        "admin/reader.html",
        reader=subscriber,
        topics=[t for t in topics if t.active or t.id in chosen],
        chosen=chosen,
        events=directory.history(subscriber.id),
        topic_by_id={t.id: t for t in topics},
        deliveries=directory.recent_deliveries(subscriber.id),
        locales=LOCALES,
        form=ButtonForm(),
        error=error,
    ), status


@bp.get("/subscribers/<int:subscriber_id>")
@admin_only
def reader(subscriber_id: int):
    return _reader_page(db.get_or_404(Subscriber, subscriber_id))


def _confirm_page(subscriber: Subscriber, endpoint: str, *, title, what, button, note="", **fields):
    return render_template(
        "admin/confirm_action.html",
        title=title,
        what=what,
        note=note,
        action=url_for(endpoint, subscriber_id=subscriber.id),
        fields=fields,
        button=button,
        back=url_for("admin.reader", subscriber_id=subscriber.id),
    )


def _first_step() -> None:
    if not ButtonForm().validate_on_submit():
        abort(400)


def _refused(subscriber_id: int, exc: BulletinError):
    db.session.expire_all()
    return _reader_page(db.get_or_404(Subscriber, subscriber_id), error=describe(exc), status=400)


def _topic_ids() -> list[int]:
    """Ticked sections: checkboxes on the reader page, one comma-joined field when confirmed."""
    values = ",".join(request.form.getlist("topics")).split(",")
    return sorted({int(v) for v in values if v.isdigit() and int(v) <= MAX_ID})


@bp.post("/subscribers/<int:subscriber_id>/topics")
@admin_only
def reader_topics(subscriber_id: int):
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    topic_ids = _topic_ids()
    if not confirmed():
        _first_step()
        names = [t.name for t in db.session.query(Topic).filter(Topic.id.in_(topic_ids))]
        return _confirm_page(
            subscriber,
            "admin.reader_topics",
            title=_("修改栏目"),
            what=_(
                "%(email)s 的栏目将改为：%(names)s",
                email=subscriber.email,
                names=_("、").join(names) or _("（无）"),
            ),
            button=_("确认修改"),
            topics=",".join(str(i) for i in topic_ids),
        )
    try:
        with transaction():
            subscriptions.change_topics(subscriber_id, topic_ids, source=STAFF)
            audit.record("reader-topics", detail=f"reader {subscriber_id}: sections {topic_ids}")
    except subscriptions.SubscriptionError as exc:
        return _refused(subscriber_id, exc)
    flash(_("栏目已修改。"))
    return redirect(url_for("admin.reader", subscriber_id=subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>/unsubscribe")
@admin_only
def reader_unsubscribe(subscriber_id: int):
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    if not confirmed():
        _first_step()
        return _confirm_page(
            subscriber,
            "admin.reader_unsubscribe",
            title=_("退订"),
            what=_("%(email)s 将被退订，不再收到任何一期。", email=subscriber.email),
            note=_("读者以后可以通过偏好设置链接或重新订阅回来。"),
            button=_("确认退订"),
        )
    with transaction():
        subscriptions.unsubscribe(subscriber_id, source=STAFF)
        audit.record("reader-unsubscribe", detail=f"reader {subscriber_id}")
    flash(_("已退订。"))
    return redirect(url_for("admin.reader", subscriber_id=subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>/resend")
@admin_only
def reader_resend(subscriber_id: int):
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    if not confirmed():
        _first_step()
        return _confirm_page(
            subscriber,
            "admin.reader_resend",
            title=_("重发确认邮件"),
            what=_("将再次给 %(email)s 发送确认订阅的邮件。", email=subscriber.email),
            button=_("确认重发"),
        )
    try:
        with transaction():
            subscriptions.request_confirmation(subscriber_id, source=STAFF)
            audit.record("reader-resend-confirmation", detail=f"reader {subscriber_id}")
            after_commit(lambda: queue.send_confirmation(subscriber_id))
    except subscriptions.SubscriptionError as exc:
        return _refused(subscriber_id, exc)
    flash(_("确认邮件已排队发送。"))
    return redirect(url_for("admin.reader", subscriber_id=subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>/suppress")
@admin_only
def reader_suppress(subscriber_id: int):
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    if not confirmed():
        _first_step()
        return _confirm_page(
            subscriber,
            "admin.reader_suppress",
            title=_("停止投递"),
            what=_(
                "%(email)s 将被列入停止投递名单：不再给这个地址发任何邮件，也不能再用它订阅。",
                email=subscriber.email,
            ),
            note=_("读者的记录保留；要删除记录请用“删除读者”。"),
            button=_("确认停止投递"),
        )
    with transaction():
        subscriptions.suppress(subscriber.email, SuppressionReason.STAFF, source=STAFF)
        audit.record("reader-suppress", detail=f"reader {subscriber_id}")
    flash(_("已停止向这个地址投递。"))
    return redirect(url_for("admin.reader", subscriber_id=subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>/erase")
@admin_only
def reader_erase(subscriber_id: int):
    subscriber = db.get_or_404(Subscriber, subscriber_id)
    if not confirmed():
        _first_step()
        return _confirm_page(
            subscriber,
            "admin.reader_erase",
            title=_("删除读者"),
            what=_(
                "将删除 %(email)s 的全部记录（称呼、栏目、投递记录），无法恢复。",
                email=subscriber.email,
            ),
            note=_("只保留地址的散列值，以免这个地址再被导入或订阅。"),
            button=_("确认删除"),
        )
    with transaction():
        subscriptions.erase(subscriber_id, source=STAFF)
        audit.record("reader-erase", detail=f"reader {subscriber_id}")
    flash(_("读者已删除。"))
    return redirect(url_for("admin.subscribers"))


# --- bulk changes ---------------------------------------------------------------------------


@bp.post("/subscribers/bulk")
@admin_only
def bulk_change():
    """Change every reader the list's filter matches (not just the page shown)."""
    filters = list_filters(request.form)
    action = request.form.get("action", "")
    if action not in set(bulk.BulkAction):
        abort(400)
    action = bulk.BulkAction(action)
    topic_id = _id_value(request.form.get("section"))
    back = url_for("admin.subscribers", **filter_args(filters))
    if not confirmed():
        _first_step()
        count = directory.count_matching(filters)
        if count == 0:
            flash(describe(bulk.BulkError("bulk-nothing")))
            return redirect(back)
        topic = db.session.get(Topic, topic_id) if topic_id else None
        if action != bulk.BulkAction.UNSUBSCRIBE and topic is None:
            flash(_("请选择一个栏目。"))
            return redirect(back)
        note = ""
        if action == bulk.BulkAction.UNSUBSCRIBE:
            what = _("将退订 %(count)s 位读者。", count=f"{count:,}")
        elif action == bulk.BulkAction.ADD_TOPIC:
            what = _("将为 %(count)s 位读者添加栏目 %(name)s", count=f"{count:,}", name=topic.name)
            note = _("已退订的读者不会添加。")
        else:
            what = _("将为 %(count)s 位读者移除栏目 %(name)s", count=f"{count:,}", name=topic.name)
            only = bulk.only_section_count(filters, topic.id)
            if only:
                note = _("其中 %(count)s 位只订阅了这个栏目，移除后将被退订。", count=f"{only:,}")
        fields = {**filter_args(filters), "action": action.value, "section": topic_id or ""}
        return render_template(
            "admin/confirm_action.html",
            title=_("批量操作"),
            what=what,
            note=note,
            action=url_for("admin.bulk_change"),
            fields=fields,
            button=_("确认"),
            back=back,
        )
    try:
        with transaction():
            change = bulk.plan(action, filters, topic_id=topic_id, staff_email=current_user.email)
            change_id, total = change.id, change.total
            if total > bulk.INLINE_LIMIT:
                after_commit(lambda: queue.run_bulk_change(change_id))
    except BulletinError as exc:
        flash(describe(exc))
        return redirect(back)
    if total <= bulk.INLINE_LIMIT:
        try:
            bulk.run(change_id)
        except Exception:
            bulk.fail(change_id)
            raise
    return redirect(url_for("admin.bulk_progress", change_id=change_id))


@bp.get("/subscribers/bulk/<int:change_id>")
@admin_only
def bulk_progress(change_id: int):
    change = db.get_or_404(BulkChange, change_id)
    filters = directory.Filters.from_dict(json.loads(change.filters))
    running = change.status in (BulkChangeStatus.QUEUED, BulkChangeStatus.RUNNING)
    return render_template(
        "admin/bulk_change.html",
        change=change,
        topic=db.session.get(Topic, change.topic_id) if change.topic_id else None,
        back=url_for("admin.subscribers", **filter_args(filters)),
        running=running,
    )
