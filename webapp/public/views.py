"""Readers' pages: subscribe, confirm, preferences, unsubscribe, their data, and the archive.

Views here read the request, call `subscriptions`, commit, and only then queue emails.
Signed links are the readers' credentials: no reader logs in.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

from flask import (
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from sqlalchemy import select

from .. import feeds, identity, queue, readership, subscriptions
from ..confirmation import confirmed
from ..errors import describe
from ..extensions import csrf, db, limiter
from ..i18n import normalize_locale, topic_name
from ..issues import issue_content, number_label
from ..models import EventSource, Issue, IssueStatus, SubscriberStatus, Topic
from ..rendering import markdown_to_html
from ..subscriptions import Consent, SubscriptionError
from ..tokens import Purpose, TokenError, external_url, make_token, read_reader_link
from ..transactions import after_commit, transaction
from . import bp
from .forms import (
    EMBED_FORM_VERSION,
    SUBSCRIBE_FORM_VERSION,
    ButtonForm,
    PreferencesForm,
    SubscribeForm,
)

PUBLISHED = (IssueStatus.SENDING, IssueStatus.SENT)


def _topic_choices() -> list[tuple[int, str]]:
    topics = db.session.scalars(
        select(Topic).where(Topic.active.is_(True)).order_by(Topic.position, Topic.id)
    )
    return [(t.id, topic_name(t)) for t in topics]


def _link_or_error_page(purpose: Purpose, token: str):
    """(link, None) for a good link, else (None, response): a clear page, never a 500."""
    try:
        return read_reader_link(purpose, token), None
    except TokenError as exc:
        return None, (render_template("public/bad_link.html", expired=exc.expired), 400)


def _subscriber_or_error_page(purpose: Purpose, token: str):
    """(reader, None) for a good link to a reader who still exists, else (None, response)."""
    link, error = _link_or_error_page(purpose, token)
    if error:
        return None, error
    subscriber = subscriptions.reader_for_link(link)
    if subscriber is None:  # erased: the link died with them
        return None, (render_template("public/bad_link.html", expired=False), 400)
    return subscriber, None


def _consent(source: str) -> Consent:
    return Consent(
        source=source,
        ip=request.remote_addr,
        user_agent=request.user_agent.string,
    )


def _submitted_address() -> str:
    """Rate-limit key for 'this address', hashed so Redis never holds addresses."""
    return "address:" + subscriptions.email_hash(request.form.get("email", ""))


def _link_key() -> str:
    """Rate-limit key for one signed link (hashed: the token is the reader's credential).

    One-click unsubscribes (RFC 8058) are POSTed by the mail provider's servers, a handful of
    IPs for all of its users; counted per IP, every reader there past the first 30 a minute
    would be refused. Counted per link, one link still cannot be hammered.
    """
    return "link:" + hashlib.sha256(request.view_args["token"].encode()).hexdigest()


@bp.get("/")
def index():
    recent = db.session.scalars(
        select(Issue)
        .where(Issue.status.in_(PUBLISHED))
        .order_by(Issue.published_at.desc())
        .limit(12)
    ).all()
    return render_template(
        "public/index.html",
        issues=recent,
        sections=feeds.active_sections(),
        number_label=number_label,
    )


ATOM = "application/atom+xml; charset=utf-8"


@bp.get("/feed.atom")
def issues_feed():
    """Every published issue, for feed readers (linked from the archive pages)."""
    name = identity.cached().name
    return Response(feeds.issues_feed(name, subtitle=_("往期简报")), mimetype=ATOM)


@bp.get("/sections/<slug>/feed.atom")
def section_feed(slug: str):
    """One section's articles in published issues."""
    topic = db.first_or_404(select(Topic).where(Topic.slug == slug))
    return Response(feeds.section_feed(topic, identity.cached().name), mimetype=ATOM)


@bp.route("/subscribe", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_SUBSCRIBE"], methods=["POST"])
@limiter.limit(
    lambda: current_app.config["RATELIMIT_SUBSCRIBE_ADDRESS"],
    key_func=_submitted_address,
    methods=["POST"],
)
def subscribe():
    form = SubscribeForm()
    if _sign_up(form, SUBSCRIBE_FORM_VERSION):
        # Redirect after POST: refreshing the thanks page does not send the form again.
        return redirect(url_for("public.check_inbox", lang=request.args.get("lang")), 303)
    status = 400 if request.method == "POST" else 200
    return render_template("public/subscribe.html", form=form), status


@bp.get("/subscribe/check-inbox")
def check_inbox():
    """What happens after a sign-up: the same page whatever the address was."""
    return render_template("public/check_inbox.html")


def _sign_up(form: SubscribeForm, source: str) -> bool:
    """The sign-up forms' one path (this site's and the embedded one): True when the form
    was taken (the reader is told to check their inbox), False to show it again, with
    its errors on a POST.

    A bot that filled in the honeypot is told the same and nothing happens; the outcome
    never depends on the address's history, so nobody learns who subscribes. With no
    sections yet (a fresh install) the page says so and nothing is taken."""
    form.topics.choices = _topic_choices()
    if not form.topics.choices:
        return False
    if request.method == "GET":
        form.topics.data = [topic_id for topic_id, _ in form.topics.choices]
    if not form.validate_on_submit():
        return False
    if form.website.data:
        return True
    if not form.topics.data:
        form.topics.errors.append(_("请至少选择一个栏目。"))
        return False
    try:
        with transaction():
            result = subscriptions.subscribe(
                form.email.data,
                form.name.data or "",
                form.topics.data,
                locale=str(get_locale()),
                consent=_consent(source),
            )
            # One task whatever the address's history (new, pending, active, suppressed,
            # emailed lately): answers must not differ in the work, hence in their time.
            reader_id = result.subscriber.id if result.subscriber else None
            after_commit(lambda: queue.answer_sign_up(reader_id, result.email_due))
    except SubscriptionError as exc:
        getattr(form, exc.field).errors.append(describe(exc, detail=False))
        return False
    return True


def _embedding_page() -> str:
    """Where the embedded form was shown: the page that framed it (the Referer of the
    frame, carried in the form), or, for a plain HTML form on that page, the POST's own
    Origin or Referer. Only an http(s) address is kept; it is evidence, not a credential."""
    for candidate in (
        request.form.get("embedded_on"),
        request.headers.get("Origin"),
        request.headers.get("Referer"),
    ):
        parts = urlsplit(candidate or "")
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}{parts.path}"[:150]
    return "unknown"


@bp.route("/embed/subscribe", methods=["GET", "POST"])
@csrf.exempt  # posted from other sites by design; see the docstring
@limiter.limit(lambda: current_app.config["RATELIMIT_SUBSCRIBE"], methods=["POST"])
@limiter.limit(
    lambda: current_app.config["RATELIMIT_SUBSCRIBE_ADDRESS"],
    key_func=_submitted_address,
    methods=["POST"],
)
def embed_subscribe():
    """The sign-up form for other sites: framed (an iframe of this page) or posted to by a
    plain HTML form on their page. No CSRF token, since no cookie of ours reaches a frame
    on another site; the double opt-in, the honeypot and the rate limits still hold, and
    the consent record names the embedding page. The frame policy is in security.py."""
    form = SubscribeForm(meta={"csrf": False})
    if _sign_up(form, f"{EMBED_FORM_VERSION} on {_embedding_page()}"):
        # Redirect after POST, as on this site's form (a 303 keeps the frame's navigation).
        return redirect(url_for("public.embed_done", lang=request.args.get("lang")), 303)
    embedded_on = request.form.get("embedded_on") or request.headers.get("Referer", "")
    status = 400 if request.method == "POST" else 200
    return render_template("public/embed.html", form=form, embedded_on=embedded_on), status


@bp.get("/embed/subscribe/done")
def embed_done():
    """The embedded form's thanks page, framed like the form (see security.py)."""
    return render_template("public/embed_done.html")


@bp.route("/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LINKS"], methods=["POST"])
def confirm(token: str):
    reader, error = _subscriber_or_error_page(Purpose.CONFIRM, token)
    if error:
        return error
    if reader.status == SubscriberStatus.ACTIVE:
        # Used already (or confirmed from another copy): say so, and where to change things.
        return render_template(
            "public/confirmed.html", subscriber=reader, again=True, **_settings(reader)
        )
    form = ButtonForm()
    # GET only shows a button: mail scanners follow links, and must not confirm for the reader.
    if form.validate_on_submit():
        with transaction():  # a reader who is not pending is left as they are
            subscriber = subscriptions.confirm(reader.id)
        if subscriber.status != SubscriberStatus.ACTIVE:
            # Left (or bounced) since this link was sent: an old link does not bring them back.
            return render_template("public/bad_link.html", expired=True), 400
        return render_template(
            "public/confirmed.html", subscriber=subscriber, **_settings(subscriber)
        )
    return render_template("public/confirm.html", form=form)


def _settings(subscriber) -> dict:
    """The confirmed page's way on: the reader's own preferences link."""
    token = make_token(Purpose.PREFERENCES, subscriptions.link_payload(subscriber))
    return {"preferences_url": url_for("public.preferences", token=token)}


def _preferences_subscriber(token: str):
    return _subscriber_or_error_page(Purpose.PREFERENCES, token)


@bp.route("/preferences/<token>", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LINKS"], methods=["POST"])
def preferences(token: str):
    subscriber, error = _preferences_subscriber(token)
    if error:
        return error
    form = PreferencesForm()
    form.topics.choices = _topic_choices()
    if request.method == "GET":
        form.name.data = subscriber.name
        form.locale.data = subscriber.locale
        form.topics.data = [t.id for t in subscriber.topics]
    if form.validate_on_submit():
        if not form.topics.data:
            form.topics.errors.append(_("请至少选择一个栏目；不想再收到简报请点“退订全部”。"))
        else:
            try:
                with transaction():
                    subscriptions.update_preferences(
                        subscriber.id,
                        form.topics.data,
                        form.name.data or "",
                        form.locale.data,
                        EventSource.EMAIL_LINK,
                        consent=_consent("preferences link"),
                    )
            except SubscriptionError as exc:
                form.topics.errors.append(describe(exc, detail=False))
            else:
                # The language chosen here takes effect on this very page: the redirect
                # carries ?lang=, which renders it and remembers it (i18n).
                locale = normalize_locale(form.locale.data)
                with force_locale(locale):
                    flash(_("已保存您的订阅设置。"))
                return redirect(url_for("public.preferences", token=token, lang=locale))
    status = 400 if request.method == "POST" else 200
    return render_template(
        "public/preferences.html",
        form=form,
        subscriber=subscriber,
        token=token,
        button=ButtonForm(),
    ), status


@bp.post("/preferences/<token>/unsubscribe")
@limiter.limit(lambda: current_app.config["RATELIMIT_LINKS"])
def leave(token: str):
    """'Unsubscribe from everything' on the preferences page."""
    subscriber, error = _preferences_subscriber(token)
    if error:
        return error
    if not ButtonForm().validate_on_submit():
        abort(400)
    if not confirmed():
        return render_template(
            "public/confirm_action.html",
            title=_("退订全部"),
            what=_("退订全部：%(email)s 将不再收到任何栏目的简报。", email=subscriber.email),
            note=_("之后想再订阅，回到设置页选择栏目并保存即可。"),
            action=url_for("public.leave", token=token),
            button=_("确认退订全部"),
            back=url_for("public.preferences", token=token),
        )
    with transaction():
        subscriptions.unsubscribe(subscriber.id, source=EventSource.EMAIL_LINK)
    return render_template("public/unsubscribed.html", topic=None, left=True, token=token)


@bp.get("/preferences/<token>/data.json")
@limiter.limit(lambda: current_app.config["RATELIMIT_LINKS"])
def my_data(token: str):
    """Everything stored about the reader, as a JSON download."""
    subscriber, error = _preferences_subscriber(token)
    if error:
        return error
    body = json.dumps(subscriptions.export_data(subscriber.id), ensure_ascii=False, indent=2)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="bulletin-my-data.json"'},
    )


@bp.route("/preferences/<token>/erase", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LINKS"], methods=["POST"])
def erase(token: str):
    """Delete the reader's data; GET asks first, POST erases."""
    subscriber, error = _preferences_subscriber(token)
    if error:
        return error
    form = ButtonForm()
    # Only the form on the asking page (confirm=yes) erases: a bare POST asks again.
    if form.validate_on_submit() and confirmed():
        with transaction():
            subscriptions.erase(subscriber.id, source=EventSource.EMAIL_LINK)
        return render_template("public/erased.html")
    return render_template("public/erase.html", form=form, subscriber=subscriber)


def _topic(value) -> Topic | None:
    try:
        topic_id = int(value)
    except (TypeError, ValueError):
        return None
    return db.session.get(Topic, topic_id) if 0 < topic_id < 2**31 else None


# The signed token is the credential here, and one-click unsubscribe (RFC 8058) arrives as a
# cookie-less POST from the mail provider, which cannot carry a CSRF token.
@csrf.exempt
@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LINKS"], key_func=_link_key, methods=["POST"])
def unsubscribe(token: str):
    link, error = _link_or_error_page(Purpose.UNSUBSCRIBE, token)
    if error:
        return error
    # A section's stop link is this link with ?section=ID (older emails signed the section
    # into the token as "t"). An unknown section is refused rather than read as "all".
    topic = None
    if link.topic_id is not None or "section" in request.args:
        topic = _topic(link.topic_id if link.topic_id is not None else request.args["section"])
        if topic is None:
            return render_template("public/bad_link.html", expired=False), 400
    if request.method == "GET":
        # Changes nothing: link scanners fetch URLs in mail.
        return render_template("public/unsubscribe.html", topic=topic)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    source = EventSource.ONE_CLICK if one_click else EventSource.EMAIL_LINK
    # A link to an erased reader unsubscribes nobody, with the same answer: they are gone.
    with transaction():
        reader = subscriptions.reader_for_link(link)
        subscriber = (
            subscriptions.unsubscribe(reader.id, topic.id if topic else None, source=source)
            if reader
            else None
        )
    if one_click:
        return "unsubscribed\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
    left = subscriber is None or subscriber.status == SubscriberStatus.UNSUBSCRIBED
    manage = (
        make_token(Purpose.PREFERENCES, subscriptions.link_payload(subscriber))
        if subscriber
        else None
    )
    return render_template("public/unsubscribed.html", topic=topic, left=left, token=manage)


@bp.get("/privacy")
def privacy():
    """What is stored about readers, what is counted (totals only), and what is not."""
    return render_template("public/privacy.html", counting_on=readership.counting_on())


@bp.get("/issues/<int:issue_id>")
def issue(issue_id: int):
    item = db.get_or_404(Issue, issue_id)
    if item.status not in PUBLISHED:
        abort(404)
    content = issue_content(item, identity.cached().name)
    readership.count_request(
        issue_id, readership.ISSUE_PAGE, readership.LinkKind.PAGE, request.method, request.headers
    )
    leads = [a.lead for s in content.sections for a in s.articles if a.lead]
    return render_template(
        "public/issue.html",
        issue=content,
        number_label=number_label(item),
        # What a link card shows (Open Graph): the preheader, else the first lead.
        description=item.preheader or (leads[0] if leads else content.title),
    )


@bp.get("/issues/<int:issue_id>/articles/<int:article_id>")
def article(issue_id: int, article_id: int):
    item = db.get_or_404(Issue, issue_id)
    if item.status not in PUBLISHED:
        abort(404)
    found = next((a for a in item.articles if a.id == article_id), None)
    if found is None:
        abort(404)
    readership.count_request(
        issue_id, article_id, readership.LinkKind.PAGE, request.method, request.headers
    )
    return render_template(
        "public/article.html",
        issue=item,
        article=found,
        body_html=markdown_to_html(found.body),
        web_url=external_url("public.article", issue_id=item.id, article_id=found.id),
    )


@bp.get("/r/<token>")
@limiter.exempt  # not limited per IP: that would keep readers' addresses in Redis
def counted_link(token: str):
    """A link from an email. Counting and redirecting is done ahead of Flask, by
    `counted_links.CountedLinks` (why: see there); a request reaches this view only when its
    token did not verify, and gets the site's 404 page, counting nothing and setting no
    cookie. The route names the links' address for `counted_url`."""
    g.cookieless = True  # not even the language cookie (see i18n.init_locale_switch)
    abort(404)
