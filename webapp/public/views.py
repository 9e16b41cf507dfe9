"""Readers' pages: subscribe, confirm, preferences, unsubscribe, and the archive."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import issues as issue_service
from .. import subscriptions
from ..extensions import csrf, db
from ..models import Issue, IssueStatus, Subscriber, SubscriberStatus, Topic
from ..rendering import markdown_to_html
from ..tokens import Purpose, TokenError, read_token
from . import bp
from .forms import ConfirmForm, PreferencesForm, SubscribeForm

PUBLISHED = (IssueStatus.SENDING, IssueStatus.SENT)


def _topic_choices() -> list[tuple[int, str]]:
    topics = db.session.scalars(
        select(Topic).where(Topic.active.is_(True)).order_by(Topic.position, Topic.id)
    )
    return [(t.id, t.name) for t in topics]


def _token_or_error_page(purpose: Purpose, token: str):
    """(payload, None) for a good token, or (None, response) with a clear page, never a 500."""
    try:
        return read_token(purpose, token), None
    except TokenError as exc:
        page = render_template("public/bad_link.html", expired=exc.expired)
        return None, (page, 400)


@bp.get("/")
def index():
    recent = db.session.scalars(
        select(Issue)
        .where(Issue.status.in_(PUBLISHED))
        .order_by(Issue.published_at.desc())
        .limit(12)
    ).all()
    return render_template("public/index.html", issues=recent)


@bp.route("/subscribe", methods=["GET", "POST"])
def subscribe():
    form = SubscribeForm()
    form.topics.choices = _topic_choices()
    if request.method == "GET":
        form.topics.data = [topic_id for topic_id, _ in form.topics.choices]
    if form.validate_on_submit():
        try:
            result = subscriptions.subscribe(
                form.email.data, form.name.data or "", form.topics.data
            )
        except subscriptions.SubscriptionError as exc:
            db.session.rollback()
            getattr(form, exc.field).errors.append(str(exc))
        else:
            db.session.commit()
            if result.needs_confirmation:
                from tasks.mail import send_confirmation

                send_confirmation.delay(result.subscriber.id)
            # The same page whatever the address's history: nobody learns who subscribes.
            return render_template("public/check_inbox.html")
    return render_template("public/subscribe.html", form=form)


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    payload, error = _token_or_error_page(Purpose.CONFIRM, token)
    if error:
        return error
    form = ConfirmForm()
    # GET only shows a button: mail scanners follow links, and must not confirm for the reader.
    if form.validate_on_submit():
        try:
            subscriptions.confirm(payload["s"])
        except subscriptions.SubscriptionError:
            return render_template("public/bad_link.html", expired=False), 400
        db.session.commit()
        return render_template("public/confirmed.html")
    return render_template("public/confirm.html", form=form)


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def preferences(token: str):
    payload, error = _token_or_error_page(Purpose.PREFERENCES, token)
    if error:
        return error
    subscriber = db.session.get(Subscriber, payload["s"])
    if subscriber is None:
        return render_template("public/bad_link.html", expired=False), 400
    form = PreferencesForm(obj=None)
    form.topics.choices = _topic_choices()
    if request.method == "GET":
        form.name.data = subscriber.name
        form.topics.data = [t.id for t in subscriber.topics]
    if form.validate_on_submit():
        try:
            subscriptions.subscribe(subscriber.email, form.name.data or "", form.topics.data)
        except subscriptions.SubscriptionError as exc:
            db.session.rollback()
            form.topics.errors.append(str(exc))
        else:
            db.session.commit()
            flash("已保存您的订阅设置。")
            return redirect(url_for("public.preferences", token=token))
    return render_template("public/preferences.html", form=form, subscriber=subscriber, token=token)


# The signed token is the credential here, and one-click unsubscribe (RFC 8058) arrives as a
# cookie-less POST from the mail provider, which cannot carry a CSRF token.
@csrf.exempt
@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):
    payload, error = _token_or_error_page(Purpose.UNSUBSCRIBE, token)
    if error:
        return error
    topic = db.session.get(Topic, payload["t"]) if "t" in payload else None
    if request.method == "GET":
        # Changes nothing: link scanners fetch URLs in mail.
        return render_template("public/unsubscribe.html", topic=topic)
    subscriber = subscriptions.unsubscribe(payload["s"], topic.id if topic else None)
    db.session.commit()
    if request.form.get("List-Unsubscribe") == "One-Click":
        return "unsubscribed\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
    left = subscriber is None or subscriber.status == SubscriberStatus.UNSUBSCRIBED
    return render_template("public/unsubscribed.html", topic=topic, left=left)


@bp.get("/issues/<int:issue_id>")
def issue(issue_id: int):
    item = db.get_or_404(Issue, issue_id)
    if item.status not in PUBLISHED:
        abort(404)
    content = issue_service.issue_content(item, current_app.config["BULLETIN_NAME"])
    return render_template("public/issue.html", issue=content, render=markdown_to_html)


@bp.get("/issues/<int:issue_id>/articles/<int:article_id>")
def article(issue_id: int, article_id: int):
    item = db.get_or_404(Issue, issue_id)
    if item.status not in PUBLISHED:
        abort(404)
    found = next((a for a in item.articles if a.id == article_id), None)
    if found is None:
        abort(404)
    return render_template(
        "public/article.html", issue=item, article=found, body_html=markdown_to_html(found.body)
    )
