"""One language at a time (issue 17): every staff and public page, with data, in Chinese shows
no stored English value, and in English shows no Chinese but what people wrote.

The data is the sample issue imported, published and sent to a few readers (one of whom
failed, one left before it went out), a second issue still a draft, and readers in every
status. Each page's visible text is read from its HTML (text nodes outside script and style;
attribute values and URLs are not shown, so they are not read).

In English, what people wrote stays as they wrote it: section, issue and article names,
article text, readers' names, the bulletin's name. Those strings are taken out of each piece
of text first; a piece that is still Chinese is a catalog string nobody translated.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import lxml.html
import pytest
from sqlalchemy import select

from tests.helpers import csrf_token, log_in
from webapp import delivery, publishing
from webapp.extensions import db
from webapp.i18n import LOCALES
from webapp.importing import parse_document
from webapp.issues import create_blank_issue, import_document, issue_subject
from webapp.models import (
    Article,
    Delivery,
    DeliveryStatus,
    EventKind,
    EventSource,
    Issue,
    StaffRole,
    Subscriber,
    SubscriberStatus,
    Topic,
)
from webapp.rendering import html_to_text, markdown_to_html
from webapp.subscriptions import log_event
from webapp.tokens import Purpose, make_token, reader_payload

SAMPLE = Path(__file__).parents[1] / "webapp" / "demo" / "bulletin-2022-08.md"
ENUM_WORDS = {
    "draft", "sending", "sent", "paused", "pending", "active", "unsubscribed",
    "failed", "unknown", "skipped",
    # A reader's events (kinds, sources, and the keys and words of their details).
    "subscribed", "confirmed", "topics", "changed", "imported", "bounced", "complained",
    "web", "link", "staff", "cli", "bounce", "api", "bulk", "added", "removed", "was",
    "fields", "reason", "soft", "confirmation", "preferences", "locale", "hard", "opt", "csv",
}  # fmt: skip
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
HIDDEN = {"script", "style", "template"}
# Code is in no language: the embed snippets (read-only text areas), a plain-text part's
# link placeholders.
CODE = {"code", "pre", "kbd", "samp", "textarea"}


@pytest.fixture
def sent_sample(app, db_session, inbox):
    """The sample issue sent to four readers (one refused by the server, one gone before
    sending), a draft, and readers pending and unsubscribed."""
    issue, _report = import_document(SAMPLE.read_bytes())
    topics = db.session.scalars(select(Topic).order_by(Topic.position)).all()
    readers = [
        Subscriber(email=f"reader{n}@example.com", name=name, status=SubscriberStatus.ACTIVE)
        for n, name in enumerate(["张三", "李四", "王五", "Ann Lee"])
    ]
    for reader in readers:
        reader.topics = list(topics)
    db.session.add_all(readers)
    db.session.add_all(
        [
            Subscriber(email="new@example.com", status=SubscriberStatus.PENDING, topics=topics[:1]),
            Subscriber(email="gone@example.com", status=SubscriberStatus.UNSUBSCRIBED),
        ]
    )
    create_blank_issue("下一期", "2022年第9期")
    db.session.commit()
    # The first reader's history: one event of each kind a reader's page shows, with details.
    first, (news, hot) = readers[0].id, topics[:2]
    for kind, source, detail in [
        (EventKind.SUBSCRIBED, EventSource.WEB, {"topics": [news.id], "was": "unsubscribed"}),
        (EventKind.CONFIRMATION_SENT, EventSource.WEB, {"email": "confirmation"}),
        (EventKind.CONFIRMED, EventSource.EMAIL_LINK, {}),
        (EventKind.TOPICS_CHANGED, EventSource.STAFF_BULK, {"added": [hot.id], "removed": []}),
        (EventKind.PROFILE_CHANGED, EventSource.EMAIL_LINK, {"fields": ["name", "locale"]}),
        (EventKind.IMPORTED, EventSource.IMPORT, {"by": "cli import", "updated": ["status"]}),
        (
            EventKind.IMPORTED,
            EventSource.IMPORT,
            {"by": "csv import by a@example.org", "import": 1},
        ),
        (EventKind.BOUNCED, EventSource.BOUNCE, {"delivery": 1, "status": "4.2.2"}),
        (EventKind.UNSUBSCRIBED, EventSource.ONE_CLICK, {"reason": "hard-bounce"}),
    ]:
        log_event(first, kind, source, **detail)
    db.session.commit()
    inbox.replies["reader2@example.com"] = (550, "5.1.1 No such user")
    publishing.publish_issue(issue.id)
    db.session.commit()
    readers[3].status = SubscriberStatus.UNSUBSCRIBED  # leaves between planning and sending
    db.session.commit()
    batches: list[list[int]] = []
    delivery.dispatch_due(issue.id, lambda _, ids: batches.append(ids))
    for ids in batches:
        delivery.send_batch(issue.id, ids)
    db.session.expire_all()
    statuses = set(db.session.scalars(select(Delivery.status)))
    assert {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED} <= statuses
    return issue


def pages(issue: Issue, locale: str) -> tuple[list[str], list[str]]:
    """(staff pages, public pages) to read: every page with a GET address, with data. The
    email preview shows the email in the language asked for: the page's."""
    draft = db.session.scalars(select(Issue).where(Issue.id != issue.id)).one()
    article = db.session.scalars(select(Article).where(Article.issue_id == issue.id)).first()
    reader = db.session.scalars(select(Subscriber).order_by(Subscriber.id)).first()
    topic = db.session.get(Topic, article.topic_id)
    token = make_token(Purpose.PREFERENCES, reader_payload(reader.id, reader.link_key))
    leave = make_token(
        Purpose.UNSUBSCRIBE, {**reader_payload(reader.id, reader.link_key), "t": topic.id}
    )
    staff = [
        "/admin/",
        "/admin/issues",
        f"/admin/issues/{issue.id}",
        f"/admin/issues/{draft.id}",
        f"/admin/issues/{issue.id}/sending",
        f"/admin/issues/{issue.id}/sending?status=failed",
        f"/admin/issues/{issue.id}/readership",
        f"/admin/issues/{issue.id}/preview?locale={locale}",
        f"/admin/issues/{issue.id}/preview?subscriber=nobody@example.com",
        f"/admin/issues/{draft.id}/publish",
        f"/admin/issues/{issue.id}/publish",
        f"/admin/issues/{draft.id}/articles/new",
        "/admin/issues/import",
        "/admin/sections",
        "/admin/subscribers",
        "/admin/subscribers/import",
        "/admin/settings",
        "/admin/identity",
        "/admin/api",
        f"/admin/subscribers/{reader.id}",
    ]
    public = [
        "/",
        "/subscribe",
        "/privacy",
        f"/issues/{issue.id}",
        f"/issues/{issue.id}/articles/{article.id}",
        f"/preferences/{token}",
        f"/preferences/{token}/erase",
        f"/unsubscribe/{leave}",
    ]
    return staff, public


def visible_text(page: str) -> list[str]:
    """The lines of text a reader sees, each with its spaces tidied (code left out)."""

    def read(element) -> bool:
        return not any(e.tag in HIDDEN | CODE for e in (element, *element.iterancestors()))

    pieces = []
    for element in lxml.html.fromstring(page).iter():
        if not isinstance(element.tag, str):
            continue
        parent = element.getparent()
        texts = [element.text if read(element) else None]
        # An element's tail is its parent's text: shown when the parent's text is.
        texts.append(element.tail if parent is not None and read(parent) else None)
        for text in texts:
            if text and text.strip():
                pieces += [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return pieces


def written_by_people(app) -> tuple[list[str], set[str]]:
    """What staff, readers and the document wrote: short strings (names, titles) to take out
    of a piece of text, longest first, and the lines of the articles' texts (as the pages
    and the plain-text email show them)."""
    # The language switch names each language in itself, so a reader finds their own.
    short = {app.config["BULLETIN_NAME"], app.config["POSTAL_ADDRESS"], *LOCALES.values()}
    for issue in db.session.scalars(select(Issue)):
        # The subject comes from the pattern staff set (settings), in their words.
        short |= {issue.title, issue.period, issue_subject(issue, app.config["BULLETIN_NAME"])}
    for topic in db.session.scalars(select(Topic)):
        short.add(topic.name)
    for reader in db.session.scalars(select(Subscriber)):
        # The consent evidence is shown as it was recorded ("web-form v1").
        short |= {reader.name, reader.consent_source, reader.consent_user_agent}
    texts: set[str] = set()
    for article in db.session.scalars(select(Article)):
        short |= {article.title, article.source_name, article.lead}
        html = markdown_to_html(article.body)
        texts |= set(visible_text(f"<div>{html}</div>"))
        texts |= {" ".join(line.split()) for line in html_to_text(html).splitlines()}
    # The import report quotes the document: its notes' excerpts, its sections and leads.
    sample = parse_document(SAMPLE.read_bytes())
    for found in sample.repaired + sample.dropped + sample.warnings:
        short |= {v for v in found.params.values() if isinstance(v, str)}
    short |= {sample.title, sample.period, *(s.name for s in sample.sections)}
    short |= {a.lead for a in sample.articles}
    short = {" ".join(s.split()) for s in short if s and s.strip()}
    return sorted(short, key=len, reverse=True), texts


def is_cut_lead(piece: str, written: list[str]) -> bool:
    """A lead the import report shortened ("…"): the start of something people wrote."""
    start = piece.removesuffix("...").strip()
    return len(start) >= 5 and any(w.startswith(start) for w in written)


def read(client, path: str) -> str:
    answer = client.get(path)
    # A preview for an address that is no reader's says so, as a 400.
    assert answer.status_code == (400 if "subscriber=" in path else 200), (path, answer.status_code)
    assert answer.mimetype == "text/html", path
    return answer.get_data(as_text=True)


def every_page(app, issue, locale: str):
    """(path, html) of every staff and public page in `locale`, and of the import report."""
    staff = log_in(app, "admin@example.org", StaffRole.ADMIN)
    public = app.test_client()
    staff_paths, public_paths = pages(issue, locale)
    read(staff, f"/admin/?lang={locale}")
    read(public, f"/?lang={locale}")
    for path in staff_paths:
        yield path, read(staff, path)
    for path in public_paths:
        yield path, read(public, path)
    form = read(staff, "/admin/issues/import")
    report = staff.post(
        "/admin/issues/import",
        data={
            "csrf_token": csrf_token(form),
            "document": (io.BytesIO(SAMPLE.read_bytes()), "a.md"),
        },
        content_type="multipart/form-data",
    )
    assert report.status_code == 200
    yield "import report", report.get_data(as_text=True)


def report(found: dict[str, set[str]]) -> str:
    return "\n".join(
        f"{path}: {piece}" for path, pieces in found.items() for piece in sorted(pieces)
    )


def test_in_chinese_no_page_shows_a_stored_english_value(app, sent_sample):
    _short, texts = written_by_people(app)
    shown = {}
    for path, page in every_page(app, sent_sample, "zh"):
        for piece in visible_text(page):
            if piece in texts:
                continue  # the sample's own words
            for word in set(re.findall(r"[A-Za-z]+", piece)) & ENUM_WORDS:
                shown.setdefault(path, set()).add(f"{word}: {piece}")
    assert not shown, report(shown)


def test_in_english_no_page_shows_an_untranslated_string(app, sent_sample):
    short, texts = written_by_people(app)
    untranslated = {}
    for path, page in every_page(app, sent_sample, "en"):
        assert 'lang="en"' in page, path
        for piece in visible_text(page):
            if piece in texts or (piece.endswith("...") and is_cut_lead(piece, short)):
                continue
            rest = piece
            for written in short:
                rest = rest.replace(written, "")
            if CJK.search(rest):
                untranslated.setdefault(path, set()).add(piece)
    assert not untranslated, report(untranslated)


def test_in_english_sections_with_an_english_name_go_by_it(app, sent_sample):
    """Staff who give a section an English name see it on every English page, except where
    both names are edited (the sections page) and where the document is quoted (the import
    report)."""
    topics = db.session.scalars(select(Topic)).all()
    for topic in topics:
        topic.name_en = f"Section {topic.id}"
    db.session.commit()
    chinese = {topic.name for topic in topics}
    shown = {}
    for path, page in every_page(app, sent_sample, "en"):
        if path in ("/admin/sections", "import report"):
            continue
        for piece in visible_text(page):
            if piece in chinese or any(name in piece for name in chinese):
                shown.setdefault(path, set()).add(piece)
    assert not shown, report(shown)
