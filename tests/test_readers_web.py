"""What a reader, or someone probing the site, sees on the public pages.

Subscribe, confirm, preferences, unsubscribe and the reader's own data, through the Flask
test client against the real database, the real Redis (the rate limits) and, wherever an
email is involved, a real Celery worker and a real SMTP server. Nothing is mocked.

A test that makes the site queue an email waits for that email before it ends: ids restart
with the tables, so a task outliving its test could mail the next test's reader.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import itsdangerous.timed
import lxml.html
import pytest
from sqlalchemy import String, func, select

from tests.helpers import add_topics, csrf_token, wait_for
from webapp import subscriptions
from webapp.extensions import db
from webapp.issues import add_article, create_issue
from webapp.models import (
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    Topic,
    utcnow,
)
from webapp.publishing import plan_deliveries
from webapp.tokens import Purpose, make_token

NEWS, HOT, WORLD, RETIRED = "质量要闻", "质量热点", "国际动态", "旧栏目"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def topics(app) -> dict[str, int]:
    """Three sections readers can choose and one retired section: name -> id."""
    with app.app_context():
        topics = add_topics([NEWS, HOT, WORLD, RETIRED], retired=(RETIRED,))
        return {t.name: t.id for t in topics}


def html(response) -> str:
    return response.get_data(as_text=True)


def subscribe(client, email: str, topic_ids, *, name: str = "", ip: str = "127.0.0.1", **extra):
    """Fill in the subscribe form as a browser does: load the page, send it back, follow the
    redirect to the thanks page (`answer.history` holds the POST's own answer)."""
    headers = extra.pop("headers", None)
    environ = {"REMOTE_ADDR": ip}
    page = client.get("/subscribe", headers=headers, environ_base=environ)
    form = {
        "csrf_token": csrf_token(html(page)),
        "email": email,
        "name": name,
        "topics": [str(t) for t in topic_ids],
        **extra,
    }
    return client.post(
        "/subscribe", data=form, headers=headers, environ_base=environ, follow_redirects=True
    )


def press_button(client, path: str, action: str | None = None, **fields):
    """Open a page and press its form's button (the form posts to `action` or back)."""
    page = client.get(path)
    assert page.status_code == 200, html(page)
    return client.post(action or path, data={"csrf_token": csrf_token(html(page)), **fields})


def stored(app, email: str) -> SimpleNamespace | None:
    """The reader's row as the database holds it now, with their topic ids; None: no row."""
    with app.app_context():
        row = db.session.scalar(select(Subscriber).where(Subscriber.email == email))
        if row is None:
            return None
        columns = {c.key: getattr(row, c.key) for c in Subscriber.__table__.columns}
        return SimpleNamespace(**columns, topics={t.id for t in row.topics})


def add_reader(app, email: str, status=SubscriberStatus.ACTIVE, topic_ids=(), **columns) -> int:
    """A reader put straight into the database; returns their id."""
    with app.app_context():
        reader = Subscriber(email=email, status=status, **columns)
        reader.topics = [db.session.get(Topic, t) for t in topic_ids]
        db.session.add(reader)
        db.session.commit()
        return reader.id


def link(app, purpose: Purpose, **payload) -> str:
    """A signed token as the emails carry it."""
    with app.app_context():
        return make_token(purpose, payload)


def event_log(app) -> list[tuple[str, str]]:
    """Every event, oldest first, as (kind, source)."""
    with app.app_context():
        rows = db.session.execute(
            select(SubscriberEvent.kind, SubscriberEvent.source).order_by(SubscriberEvent.id)
        )
        return [(kind.value, source) for kind, source in rows]


def confirmation_path(inbox, address: str) -> str:
    """Wait for the confirmation email and return the path of the link it carries."""
    [message] = wait_for(lambda: inbox.to(address), what=f"the confirmation email to {address}")
    text = message.get_body(("plain",)).get_content()
    url = re.search(r"https://bulletin\.example\.org/confirm/\S+", text)
    assert url, text
    return urlsplit(url.group(0)).path


def ticked_sections(page) -> dict[int, bool]:
    """The section checkboxes on a page: topic id -> ticked."""
    document = lxml.html.fromstring(html(page))
    boxes = document.xpath('//input[@type="checkbox"][@name="topics"]')
    return {int(box.get("value")): box.get("checked") is not None for box in boxes}


class Later:
    """Stands in for the `time` module itsdangerous reads, some days from now."""

    def __init__(self, days: int):
        self.offset = days * 86400

    def time(self) -> float:
        return time.time() + self.offset


# --- the subscribe page ----------------------------------------------------------------------


def test_the_subscribe_page_is_in_chinese_with_every_active_section_ticked(app, topics):
    page = app.test_client().get("/subscribe")

    assert page.status_code == 200
    assert '<html lang="zh-CN">' in html(page)
    assert "订阅工作简报" in html(page)
    assert "电子邮箱" in html(page)
    active = [topics[NEWS], topics[HOT], topics[WORLD]]
    assert ticked_sections(page) == dict.fromkeys(active, True)
    assert RETIRED not in html(page)


def test_a_browser_that_prefers_english_gets_the_page_in_english(app, topics):
    page = app.test_client().get("/subscribe", headers={"Accept-Language": "en-US,en;q=0.9"})

    text = html(page)
    assert '<html lang="en">' in text
    assert "Subscribe to 工作简报" in text
    # The form's own labels too, not only the template's sentences.
    for label in ("Email address", "Name (optional)", "Sections"):
        assert label in text
    for chinese in ("电子邮箱", "称呼", "订阅栏目", "提交即表示"):
        assert chinese not in text


def test_lang_en_switches_to_english_and_a_cookie_remembers_the_choice(app, topics):
    client = app.test_client()
    switched = client.get("/subscribe?lang=en")
    assert '<html lang="en">' in html(switched)
    assert client.get_cookie("lang").value == "en"

    # Later visits, even from a browser that asks for Chinese, stay English.
    again = client.get("/subscribe", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="en">' in html(again)
    assert "Email address" in html(again)

    back = client.get("/subscribe?lang=zh")
    assert '<html lang="zh-CN">' in html(back)
    assert client.get_cookie("lang").value == "zh"


def test_the_subscribe_form_is_a_plain_form_that_works_without_javascript(
    app, topics, celery_worker, inbox
):
    client = app.test_client()
    page = client.get("/subscribe")
    document = lxml.html.fromstring(html(page))
    assert not document.xpath("//script"), "the page needs no JavaScript"
    [form] = document.forms
    assert form.method.upper() == "POST"
    assert form.get("action") in (None, "", "/subscribe")
    assert document.xpath('//form//button[@type="submit"]')

    # Send exactly what a browser without scripts sends: the form's own values, plus an address.
    fields = dict(form.form_values())
    fields["topics"] = [value for name, value in form.form_values() if name == "topics"]
    fields["email"] = "no.script@example.com"
    answer = client.post("/subscribe", data=fields)

    # Redirect after POST: the thanks page is a GET, so refreshing it sends nothing again.
    assert answer.status_code == 303
    assert answer.location == "/subscribe/check-inbox"
    thanks = client.get(answer.location)
    assert thanks.status_code == 200
    assert "请查收邮件" in html(thanks)
    assert confirmation_path(inbox, "no.script@example.com")
    assert stored(app, "no.script@example.com").topics == {
        topics[NEWS],
        topics[HOT],
        topics[WORLD],
    }


# --- what an attacker can learn, and how often mail goes -------------------------------------


def test_every_address_gets_the_same_answer_whatever_its_history(app, topics, celery_worker, inbox):
    news = [topics[NEWS]]
    add_reader(
        app, "pending@example.com", SubscriberStatus.PENDING, news, confirmation_sent_at=utcnow()
    )
    add_reader(app, "active@example.com", SubscriberStatus.ACTIVE, news)
    add_reader(
        app,
        "left@example.com",
        SubscriberStatus.UNSUBSCRIBED,
        news,
        confirmation_sent_at=utcnow() - timedelta(days=30),
    )
    erased_id = add_reader(app, "erased@example.com", SubscriberStatus.ACTIVE, news)
    with app.app_context():
        subscriptions.erase(erased_id)
        db.session.commit()

    client = app.test_client()
    answers = {}
    # The addresses that must get nothing go first: by the time the others' emails arrive, any
    # email wrongly queued for them would have been sent too.
    addresses = ["erased", "active", "pending", "left", "new"]
    for n, who in enumerate(addresses):
        answer = subscribe(client, f"{who}@example.com", news, ip=f"203.0.113.{n + 1}")
        [posted] = answer.history
        answers[who] = (posted.status_code, posted.location, answer.status_code, answer.get_data())

    assert len(set(answers.values())) == 1, "the answer tells one address from another"
    assert answers["new"][:3] == (303, "/subscribe/check-inbox", 200)
    assert "请查收邮件" in answers["new"][3].decode()

    confirmation_path(inbox, "new@example.com")
    confirmation_path(inbox, "left@example.com")
    # The active reader's choices are untouched; they are told how to change them themselves.
    [notice] = wait_for(lambda: inbox.to("active@example.com"), what="the preferences link")
    assert notice["Subject"] == "您已订阅《工作简报》"
    assert "/preferences/" in notice.get_body(("plain",)).get_content()
    for who in ("erased", "pending"):
        assert inbox.to(f"{who}@example.com") == []
    assert stored(app, "erased@example.com") is None
    assert stored(app, "active@example.com").status == SubscriberStatus.ACTIVE


def test_a_hundred_submissions_of_one_address_send_one_confirmation_email(
    app, topics, celery_worker, inbox, monkeypatch
):
    # Lift the rate limits so that only the once-a-day confirmation rule is left to hold.
    monkeypatch.setitem(app.config, "RATELIMIT_SUBSCRIBE", "1000 per minute")
    monkeypatch.setitem(app.config, "RATELIMIT_SUBSCRIBE_ADDRESS", "1000 per hour")
    client = app.test_client()
    token = csrf_token(html(client.get("/subscribe")))
    spellings = ["victim@example.com", "Victim@Example.COM", "  victim@example.com "]

    answers = set()
    for n in range(100):
        answer = client.post(
            "/subscribe",
            data={"csrf_token": token, "email": spellings[n % 3], "topics": [topics[NEWS]]},
        )
        answers.add((answer.status_code, answer.location, answer.get_data()))

    assert len(answers) == 1
    assert answers.pop()[0] == 303
    wait_for(lambda: inbox.to("victim@example.com"), what="the confirmation email")
    time.sleep(1.0)  # let any other queued confirmation reach the worker and the server
    assert len(inbox.to("victim@example.com")) == 1


def test_too_many_sign_ups_from_one_ip_get_a_readable_page_in_the_readers_language(
    app, topics, celery_worker, inbox
):
    client = app.test_client()
    english = {"Accept-Language": "en"}
    for n in range(5):
        answer = subscribe(
            client, f"reader{n}@example.com", [topics[NEWS]], ip="192.0.2.10", headers=english
        )
        assert answer.status_code == 200, html(answer)

    refused = subscribe(
        client, "reader5@example.com", [topics[NEWS]], ip="192.0.2.10", headers=english
    )

    assert refused.status_code == 429
    assert refused.mimetype == "text/html"
    assert '<html lang="en">' in html(refused)
    assert "Too many requests" in html(refused)
    assert "Please try again later." in html(refused)
    assert "Retry-After" in refused.headers
    assert stored(app, "reader5@example.com") is None
    # Someone else, elsewhere, can still subscribe.
    other = subscribe(client, "neighbour@example.com", [topics[NEWS]], ip="192.0.2.11")
    assert other.status_code == 200
    sent_to = [f"reader{n}@example.com" for n in range(5)] + ["neighbour@example.com"]
    wait_for(lambda: all(inbox.to(a) for a in sent_to), what="the six confirmation emails")


def test_one_address_submitted_from_many_ips_is_limited_too(app, topics, celery_worker, inbox):
    client = app.test_client()
    for n in range(5):
        answer = subscribe(client, "target@example.com", [topics[NEWS]], ip=f"198.18.0.{n}")
        assert answer.status_code == 200

    refused = subscribe(client, "TARGET@example.com", [topics[HOT]], ip="198.18.0.99")

    assert refused.status_code == 429
    assert '<html lang="zh-CN">' in html(refused)
    assert "操作太频繁" in html(refused)
    assert stored(app, "target@example.com").topics == {topics[NEWS]}
    wait_for(lambda: inbox.to("target@example.com"), what="the one confirmation email")


def test_a_post_without_a_csrf_token_is_refused_and_stores_nothing(app, topics):
    client = app.test_client()
    form = {"email": "forged@example.com", "topics": [topics[NEWS]]}

    without = client.post("/subscribe", data=form)
    forged = client.post("/subscribe", data={**form, "csrf_token": "not-a-real-token"})

    for answer in (without, forged):
        assert answer.status_code == 400
        assert "请求有误" in html(answer)
    assert stored(app, "forged@example.com") is None
    assert event_log(app) == []


def test_a_bot_that_fills_in_the_honeypot_sees_success_and_nothing_is_stored(
    app, topics, celery_worker, inbox
):
    client = app.test_client()
    bot = subscribe(client, "bot@example.com", [topics[NEWS]], website="https://spam.example")
    person = subscribe(client, "person@example.com", [topics[NEWS]])

    assert (bot.status_code, bot.get_data()) == (person.status_code, person.get_data())
    confirmation_path(inbox, "person@example.com")
    assert stored(app, "bot@example.com") is None
    assert inbox.to("bot@example.com") == []
    assert event_log(app) == [("subscribed", "web"), ("confirmation_sent", "web")]


def test_a_section_retired_while_the_page_was_open_gets_a_clear_message(app, topics):
    client = app.test_client()
    page = client.get("/subscribe")
    with app.app_context():
        db.session.get(Topic, topics[HOT]).active = False
        db.session.commit()

    answer = client.post(
        "/subscribe",
        data={
            "csrf_token": csrf_token(html(page)),
            "email": "late@example.com",
            "topics": [topics[NEWS], topics[HOT]],
        },
    )

    assert answer.status_code == 400
    assert "所选栏目已不存在，请刷新页面后重新选择。" in html(answer)
    assert "is not a valid choice" not in html(answer)
    assert set(ticked_sections(answer)) == {topics[NEWS], topics[WORLD]}
    assert stored(app, "late@example.com") is None


# --- confirming -------------------------------------------------------------------------------


def test_the_emailed_link_confirms_only_when_the_reader_presses_the_button(
    app, topics, celery_worker, inbox
):
    client = app.test_client()
    answer = subscribe(
        client,
        "han.meimei@example.com",
        [topics[NEWS], topics[WORLD]],
        name="韩梅梅",
        ip="198.51.100.7",
        headers={"User-Agent": BROWSER},
    )
    assert answer.status_code == 200
    path = confirmation_path(inbox, "han.meimei@example.com")

    # A mail scanner (or the reader) opening the link twice changes nothing.
    for _ in range(2):
        opened = app.test_client().get(path)
        assert opened.status_code == 200
        assert "确认订阅" in html(opened)
    assert stored(app, "han.meimei@example.com").status == SubscriberStatus.PENDING

    confirmed = press_button(app.test_client(), path)

    assert confirmed.status_code == 200
    assert "订阅成功" in html(confirmed)
    assert f"{NEWS}、{WORLD}" in html(confirmed)
    reader = stored(app, "han.meimei@example.com")
    assert reader.status == SubscriberStatus.ACTIVE
    assert reader.topics == {topics[NEWS], topics[WORLD]}
    assert reader.name == "韩梅梅"
    assert reader.confirmed_at is not None
    # The evidence of consent: who, from where, with what, on which form.
    assert reader.consent_ip == "198.51.100.7"
    assert reader.consent_user_agent == BROWSER
    assert reader.consent_source == "web-form v1"
    assert reader.consent_method.value == "double-opt-in"
    assert reader.consented_at is not None
    assert event_log(app) == [
        ("subscribed", "web"),
        ("confirmation_sent", "web"),
        ("confirmed", "email-link"),
    ]


def test_a_used_confirm_link_says_it_is_done_and_leads_to_the_preferences(
    app, topics, celery_worker, inbox
):
    client = app.test_client()
    subscribe(client, "li.lei@example.com", [topics[NEWS]])
    path = confirmation_path(inbox, "li.lei@example.com")
    assert press_button(app.test_client(), path).status_code == 200

    # The reader clicks the link in the email again, days later.
    again = app.test_client().get(path)

    assert again.status_code == 200
    page = lxml.html.fromstring(html(again))
    assert page.xpath("string(//h1)") == "已确认"
    assert not page.xpath("//main//form"), "nothing left to confirm"
    [manage] = page.xpath('//a[contains(@href, "/preferences/")]')
    preferences = app.test_client().get(manage.get("href"))
    assert preferences.status_code == 200
    assert ticked_sections(preferences)[topics[NEWS]]
    assert stored(app, "li.lei@example.com").status == SubscriberStatus.ACTIVE


def test_the_thanks_page_says_what_happens_next(app, topics):
    page = app.test_client().get("/subscribe/check-inbox")
    text = lxml.html.fromstring(html(page)).text_content()
    assert page.status_code == 200
    for words in ("请查收邮件", "垃圾邮件", "7 天内有效", "10 分钟后", "地址填错了？"):
        assert words in text, words
    assert 'href="/subscribe"' in html(page)  # wrong address? type it again

    english = app.test_client().get("/subscribe/check-inbox?lang=en")
    text = lxml.html.fromstring(html(english)).text_content()
    for words in ("Check your inbox", "spam folder", "valid for 7 days", "Type it again"):
        assert words in text, words


def test_a_reader_whose_email_went_astray_can_ask_for_it_again(app, topics, celery_worker, inbox):
    client = app.test_client()
    subscribe(client, "lost@example.com", [topics[NEWS]], ip="192.0.2.1")
    wait_for(lambda: inbox.to("lost@example.com"), what="the first confirmation")

    # At once: the first may still be on its way, so nothing more goes.
    subscribe(client, "lost@example.com", [topics[NEWS]], ip="192.0.2.2")
    with app.app_context():  # ten minutes later (no sleeping: the stamp goes back)
        reader = db.session.scalar(select(Subscriber).where(Subscriber.email == "lost@example.com"))
        reader.confirmation_sent_at -= timedelta(minutes=10)
        db.session.commit()
    answer = subscribe(client, "lost@example.com", [topics[NEWS]], ip="192.0.2.3")

    assert answer.status_code == 200 and "请查收邮件" in html(answer)
    wait_for(lambda: len(inbox.to("lost@example.com")) == 2, what="the second confirmation")
    first, second = inbox.to("lost@example.com")
    assert first["Subject"] == second["Subject"] == "请确认订阅《工作简报》"
    time.sleep(0.5)  # let any wrongly queued third email arrive
    assert len(inbox.to("lost@example.com")) == 2


def test_a_fresh_install_says_there_are_no_sections_yet(app):
    client = app.test_client()
    for path in ("/subscribe", "/embed/subscribe"):
        page = client.get(path)
        assert page.status_code == 200
        document = lxml.html.fromstring(html(page))
        assert "还没有可订阅的栏目" in document.text_content(), path
        assert not document.xpath('//input[@name="email"]'), "no form to fill in"
    # A form posted anyway (the embedded one needs no token) is not taken.
    answer = client.post("/embed/subscribe", data={"email": "early@example.com", "topics": [1]})
    assert answer.status_code == 400
    assert "还没有可订阅的栏目" in html(answer)
    assert stored(app, "early@example.com") is None


def test_a_confirmation_link_cannot_unsubscribe_or_open_preferences(app, topics):
    reader_id = add_reader(app, "pending@example.com", SubscriberStatus.PENDING, [topics[NEWS]])
    token = link(app, Purpose.CONFIRM, s=reader_id)
    client = app.test_client()

    answers = [
        client.get(f"/unsubscribe/{token}"),
        client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}),
        client.get(f"/preferences/{token}"),
        client.get(f"/preferences/{token}/data.json"),
        client.get(f"/preferences/{token}/erase"),
    ]

    for answer in answers:
        assert answer.status_code == 400, answer.request.path
        assert "链接无效" in html(answer)
    reader = stored(app, "pending@example.com")
    assert reader.status == SubscriberStatus.PENDING
    assert reader.topics == {topics[NEWS]}


def test_a_tampered_link_says_it_is_not_valid(app, topics):
    reader_id = add_reader(app, "pending@example.com", SubscriberStatus.PENDING, [topics[NEWS]])
    mine = link(app, Purpose.CONFIRM, s=reader_id)
    other = link(app, Purpose.CONFIRM, s=reader_id + 1)
    signature = mine.rpartition(".")[2]
    tampered = [
        # A changed signature: a middle character, since the last base64 character of the
        # signature carries unused bits and some changes to it decode to the same bytes.
        mine[:-10] + ("A" if mine[-10] != "A" else "B") + mine[-9:],
        other.rpartition(".")[0] + "." + signature,  # somebody else's payload
        "not-a-token-at-all",
    ]
    client = app.test_client()

    for token in tampered:
        answer = client.get(f"/confirm/{token}")
        assert answer.status_code == 400
        assert "链接无效" in html(answer)
        assert "请使用邮件中的完整链接" in html(answer)
    assert stored(app, "pending@example.com").status == SubscriberStatus.PENDING


def test_an_expired_confirmation_link_says_so_and_offers_to_subscribe_again(
    app, topics, monkeypatch
):
    reader_id = add_reader(app, "slow@example.com", SubscriberStatus.PENDING, [topics[NEWS]])
    token = link(app, Purpose.CONFIRM, s=reader_id)
    client = app.test_client()

    monkeypatch.setattr(itsdangerous.timed, "time", Later(days=6))
    assert client.get(f"/confirm/{token}").status_code == 200  # still good within 7 days

    monkeypatch.setattr(itsdangerous.timed, "time", Later(days=8))
    answer = client.get(f"/confirm/{token}")

    assert answer.status_code == 400
    assert "链接已过期" in html(answer)
    assert 'href="/subscribe"' in html(answer)
    assert stored(app, "slow@example.com").status == SubscriberStatus.PENDING


# --- preferences -----------------------------------------------------------------------------


def test_a_reader_changes_sections_name_and_language_from_their_preferences_link(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]], name="李雷")
    path = f"/preferences/{link(app, Purpose.PREFERENCES, s=reader_id)}"
    client = app.test_client()
    page = client.get(path)
    assert page.status_code == 200
    assert "li.lei@example.com" in html(page)
    assert ticked_sections(page) == {
        topics[NEWS]: True,
        topics[HOT]: False,
        topics[WORLD]: False,
    }

    saved = client.post(
        path,
        data={
            "csrf_token": csrf_token(html(page)),
            "topics": [topics[HOT], topics[WORLD]],
            "name": "李雷 先生",
            "locale": "en",
        },
    )

    assert saved.status_code == 302
    assert urlsplit(saved.headers["Location"]).path == path
    # English was chosen on this page, so this page answers in English from now on.
    after = client.get(saved.headers["Location"])
    assert 'lang="en"' in html(after) and "Your settings have been saved." in html(after)
    assert lxml.html.fromstring(html(after)).findtext(".//h1") == "Subscription settings"
    assert 'lang="en"' in html(client.get(path))  # remembered
    assert ticked_sections(after) == {
        topics[NEWS]: False,
        topics[HOT]: True,
        topics[WORLD]: True,
    }
    reader = stored(app, "li.lei@example.com")
    assert reader.topics == {topics[HOT], topics[WORLD]}
    assert reader.name == "李雷 先生"
    assert reader.locale == "en"
    assert reader.status == SubscriberStatus.ACTIVE
    assert sorted(event_log(app)) == [
        ("profile_changed", "email-link"),
        ("topics_changed", "email-link"),
    ]


def test_saving_preferences_with_no_section_is_refused_with_a_message(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]])
    path = f"/preferences/{link(app, Purpose.PREFERENCES, s=reader_id)}"

    answer = press_button(app.test_client(), path, name="李雷", locale="zh")

    assert answer.status_code == 400
    assert "请至少选择一个栏目" in html(answer)
    assert "退订全部" in html(answer)
    reader = stored(app, "li.lei@example.com")
    assert reader.topics == {topics[NEWS]}
    assert reader.status == SubscriberStatus.ACTIVE
    assert event_log(app) == []


def test_unsubscribing_from_everything_and_choosing_sections_again_resubscribes(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]])
    path = f"/preferences/{link(app, Purpose.PREFERENCES, s=reader_id)}"
    client = app.test_client()

    left = press_button(client, path, action=f"{path}/unsubscribe", confirm="yes")

    assert left.status_code == 200
    assert "您已退订" in html(left)
    assert stored(app, "li.lei@example.com").status == SubscriberStatus.UNSUBSCRIBED
    page = client.get(path)
    assert "已退订：选择栏目并保存即可重新订阅" in html(page)

    back = client.post(
        path,
        data={"csrf_token": csrf_token(html(page)), "topics": [topics[WORLD]], "locale": "zh"},
    )

    assert back.status_code == 302
    reader = stored(app, "li.lei@example.com")
    assert reader.status == SubscriberStatus.ACTIVE
    assert reader.topics == {topics[WORLD]}
    assert event_log(app) == [("unsubscribed", "email-link"), ("resubscribed", "email-link")]


def test_download_my_data_returns_json_with_the_address_sections_and_events(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]], name="李雷")
    path = f"/preferences/{link(app, Purpose.PREFERENCES, s=reader_id)}"
    client = app.test_client()
    press_button(client, path, topics=[topics[NEWS], topics[HOT]], name="李雷", locale="zh")

    download = client.get(f"{path}/data.json")

    assert download.status_code == 200
    assert download.mimetype == "application/json"
    assert download.headers["Content-Disposition"].startswith("attachment")
    data = json.loads(download.get_data(as_text=True))
    assert data["email"] == "li.lei@example.com"
    assert data["name"] == "李雷"
    assert [s["name"] for s in data["sections"]] == [NEWS, HOT]
    [event] = data["events"]
    assert (event["kind"], event["source"]) == ("topics_changed", "email-link")
    assert event["detail"] == {"added": [topics[HOT]], "removed": []}


def rows_mentioning(*needles: str) -> list[str]:
    """Every table.column, among all string columns of all tables, holding one of these."""
    found = []
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if not isinstance(column.type, String):  # Text and enums are Strings too
                continue
            for needle in needles:
                query = select(func.count()).select_from(table)
                if db.session.scalar(query.where(func.lower(column).contains(needle.lower()))):
                    found.append(f"{table.name}.{column.name}")
    return found


def test_erasing_asks_first_then_leaves_nothing_but_a_hash_and_the_address_stays_out(
    app, topics, celery_worker, inbox
):
    address = "erase.me@example.com"
    reader_id = add_reader(
        app,
        address,
        topic_ids=[topics[NEWS]],
        name="韩梅梅",
        consent_ip="198.51.100.7",
        consent_user_agent=BROWSER,
    )
    with app.app_context():
        issue = create_issue("第一期")
        add_article(issue, db.session.get(Topic, topics[NEWS]), "标题", "正文")
        db.session.add(
            Delivery(
                issue_id=issue.id,
                subscriber_id=reader_id,
                status=DeliveryStatus.SENT,
                smtp_reply=f"250 2.0.0 <{address}> queued as 1A2B",
            )
        )
        db.session.commit()
        assert rows_mentioning(address, "韩梅梅"), "the scan finds what is there"
    manage = f"/preferences/{link(app, Purpose.PREFERENCES, s=reader_id)}"
    client = app.test_client()
    press_button(client, manage, topics=[topics[HOT]], name="韩梅梅", locale="zh")

    asked = client.get(f"{manage}/erase")
    assert asked.status_code == 200
    assert "删除我的数据？" in html(asked)
    assert address in html(asked)
    assert stored(app, address) is not None

    erased = press_button(client, f"{manage}/erase", confirm="yes")

    assert erased.status_code == 200
    assert "您的数据已删除" in html(erased)
    with app.app_context():
        assert rows_mentioning(address, "韩梅梅", "198.51.100.7", "Firefox") == []
        [suppression] = db.session.scalars(select(Suppression)).all()
        assert suppression.email_hash == hashlib.sha256(address.encode()).hexdigest()
        assert suppression.reason == SuppressionReason.ERASED
    assert client.get(manage).status_code == 400
    assert "链接无效" in html(client.get(manage))

    # Subscribing again with that address: the same page as anybody, no row, no email.
    again = subscribe(app.test_client(), "Erase.Me@Example.com", [topics[NEWS]], ip="192.0.2.1")
    control = subscribe(app.test_client(), "someone@example.com", [topics[NEWS]], ip="192.0.2.2")
    assert (again.status_code, again.get_data()) == (control.status_code, control.get_data())
    confirmation_path(inbox, "someone@example.com")
    assert inbox.to(address) == []
    assert stored(app, address) is None
    with app.app_context():
        assert rows_mentioning(address) == []


# --- unsubscribe links -----------------------------------------------------------------------


def test_opening_an_unsubscribe_link_changes_nothing(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]])
    path = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id)}"

    page = app.test_client().get(path)

    assert page.status_code == 200
    assert "退订全部简报？" in html(page)
    assert lxml.html.fromstring(html(page)).xpath('//form[@method="post"]//button')
    assert stored(app, "li.lei@example.com").status == SubscriberStatus.ACTIVE
    assert event_log(app) == []


def test_unsubscribing_in_the_browser_confirms_and_offers_a_way_back(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]])
    path = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id)}"
    client = app.test_client()
    client.get(path)

    answer = client.post(path)  # the page's button: an empty form

    assert answer.status_code == 200
    assert "您已退订" in html(answer)
    assert stored(app, "li.lei@example.com").status == SubscriberStatus.UNSUBSCRIBED
    [way_back] = lxml.html.fromstring(html(answer)).xpath('//a[contains(@href, "/preferences/")]')
    assert "改变主意了" in way_back.text_content()
    assert "已退订：选择栏目并保存即可重新订阅" in html(client.get(way_back.get("href")))
    assert event_log(app) == [("unsubscribed", "email-link")]


@pytest.mark.parametrize("encoding", ["application/x-www-form-urlencoded", "multipart/form-data"])
def test_one_click_unsubscribe_from_the_mail_provider_answers_200_and_is_idempotent(
    app, topics, encoding
):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]])
    path = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id)}"
    provider = app.test_client(use_cookies=False)  # no session, no CSRF token: RFC 8058

    answers = [
        provider.post(path, data={"List-Unsubscribe": "One-Click"}, content_type=encoding)
        for _ in range(2)
    ]

    for answer in answers:
        assert answer.status_code == 200
        assert "Location" not in answer.headers
    assert stored(app, "li.lei@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert event_log(app) == [("unsubscribed", "one-click")]


def test_one_click_unsubscribes_relayed_by_one_mail_provider_are_all_honoured(app, topics):
    """Gmail and the like POST every one of their users' one-clicks from a few servers."""
    readers = [
        add_reader(app, f"reader{n}@gmail.example", topic_ids=[topics[NEWS]]) for n in range(40)
    ]
    provider = app.test_client(use_cookies=False)

    for reader_id in readers:
        path = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id)}"
        answer = provider.post(
            path,
            data={"List-Unsubscribe": "One-Click"},
            environ_base={"REMOTE_ADDR": "209.85.220.41"},
        )
        assert answer.status_code == 200, f"reader {reader_id}: {answer.status_code}"

    with app.app_context():
        statuses = db.session.scalars(select(Subscriber.status)).all()
    assert set(statuses) == {SubscriberStatus.UNSUBSCRIBED}


def test_one_unsubscribe_link_posted_over_and_over_is_still_limited(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]])
    path = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id)}"
    client = app.test_client(use_cookies=False)

    answers = [client.post(path, environ_base={"REMOTE_ADDR": f"192.0.2.{n}"}) for n in range(31)]

    assert [a.status_code for a in answers] == [200] * 30 + [429]
    assert "操作太频繁" in html(answers[-1])


def test_stopping_one_section_keeps_the_others_and_stopping_the_last_one_is_leaving(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS], topics[HOT]])
    unsubscribe = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id)}"
    stop_news = f"{unsubscribe}?section={topics[NEWS]}"  # as emails carry it now
    # Emails sent before that signed the section into the token; those links still work.
    stop_hot = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id, t=topics[HOT])}"
    client = app.test_client()

    asked = client.get(stop_news)
    assert "不再接收「质量要闻」栏目？" in html(asked)
    stopped = client.post(stop_news)

    assert stopped.status_code == 200
    assert "已停止「质量要闻」栏目" in html(stopped)
    reader = stored(app, "li.lei@example.com")
    assert reader.status == SubscriberStatus.ACTIVE
    assert reader.topics == {topics[HOT]}

    last = client.post(stop_hot)

    assert last.status_code == 200
    assert "您已退订" in html(last)
    reader = stored(app, "li.lei@example.com")
    assert reader.status == SubscriberStatus.UNSUBSCRIBED
    assert reader.topics == set()
    assert event_log(app) == [
        ("topics_changed", "email-link"),
        ("topics_changed", "email-link"),
        ("unsubscribed", "email-link"),
    ]


@pytest.mark.parametrize("section", ["999999", "abc", "", "99999999999999999999", "-1"])
def test_a_stop_link_for_an_unknown_section_is_refused_not_read_as_everything(app, topics, section):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS], topics[HOT]])
    path = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id)}?section={section}"
    client = app.test_client()

    for answer in (client.get(path), client.post(path)):
        assert answer.status_code == 400
        assert "链接无效" in html(answer)
    reader = stored(app, "li.lei@example.com")
    assert reader.status == SubscriberStatus.ACTIVE
    assert reader.topics == {topics[NEWS], topics[HOT]}


def test_a_reader_who_unsubscribed_is_not_planned_for_the_next_issue(app, topics):
    stays = add_reader(app, "stays@example.com", topic_ids=[topics[NEWS]])
    leaves = add_reader(app, "leaves@example.com", topic_ids=[topics[NEWS], topics[HOT]])
    unsubscribe = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=leaves)}"
    assert app.test_client().post(unsubscribe).status_code == 200

    with app.app_context():
        issue = create_issue("下一期")
        for name in (NEWS, HOT):
            add_article(issue, db.session.get(Topic, topics[name]), f"{name}的文章", "正文")
        plan_deliveries(issue.id, {topics[NEWS], topics[HOT]})
        planned = db.session.scalars(select(Delivery.subscriber_id)).all()

    assert planned == [stays]


# --- names and the event log -----------------------------------------------------------------


def test_a_name_with_line_breaks_and_control_characters_is_stored_cleaned(
    app, topics, celery_worker, inbox
):
    client = app.test_client()
    hostile = "李雷\r\nBcc: everyone@example.net\x00\x1b[31m\u2028"

    answer = subscribe(client, "li.lei@example.com", [topics[NEWS]], name=hostile)

    assert answer.status_code == 200
    name = stored(app, "li.lei@example.com").name
    assert name.startswith("李雷")
    assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029]", name)
    [message] = wait_for(lambda: inbox.to("li.lei@example.com"), what="the confirmation email")
    assert message["Bcc"] is None
    assert inbox.to("everyone@example.net") == []

    too_long = subscribe(client, "long.name@example.com", [topics[NEWS]], name="长" * 101)

    assert too_long.status_code == 400
    assert "100" in html(too_long)  # the form says how long a name may be
    assert stored(app, "long.name@example.com") is None
    longest = subscribe(client, "longest@example.com", [topics[NEWS]], name="长" * 99 + "\n")
    assert longest.status_code == 200
    assert stored(app, "longest@example.com").name == "长" * 99
    wait_for(lambda: inbox.to("longest@example.com"), what="the second confirmation email")


def test_every_change_to_a_reader_is_logged_with_where_it_came_from(
    app, topics, celery_worker, inbox
):
    address = "wang.fang@example.com"
    subscribe(app.test_client(), address, [topics[NEWS]])
    press_button(app.test_client(), confirmation_path(inbox, address))
    reader_id = stored(app, address).id
    manage = f"/preferences/{link(app, Purpose.PREFERENCES, s=reader_id)}"
    unsubscribe = f"/unsubscribe/{link(app, Purpose.UNSUBSCRIBE, s=reader_id)}"
    client = app.test_client()

    press_button(client, manage, topics=[topics[NEWS], topics[HOT]], locale="zh")
    app.test_client(use_cookies=False).post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    press_button(client, manage, topics=[topics[WORLD]], locale="zh")
    press_button(client, f"{manage}/erase", confirm="yes")

    assert event_log(app) == [
        ("subscribed", "web"),
        ("confirmation_sent", "web"),
        ("confirmed", "email-link"),
        ("topics_changed", "email-link"),
        ("unsubscribed", "one-click"),
        ("resubscribed", "email-link"),
        ("erased", "email-link"),
    ]
    with app.app_context():
        # The log outlives the reader, without a way back to them.
        assert db.session.scalars(select(SubscriberEvent.subscriber_id)).all() == [None] * 7


# --- error pages -----------------------------------------------------------------------------


def test_opening_a_button_address_directly_gives_a_readable_page(app, topics):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]])
    leave = f"/preferences/{link(app, Purpose.PREFERENCES, s=reader_id)}/unsubscribe"

    answer = app.test_client().get(leave, headers={"Accept-Language": "en"})

    assert answer.status_code == 405
    assert answer.headers["Allow"].split(", ").count("POST") == 1
    assert '<html lang="en">' in html(answer)
    assert "Use the button on the page, or the link in the email." in html(answer)
    assert stored(app, "li.lei@example.com").status == SubscriberStatus.ACTIVE


def test_a_failure_inside_the_site_shows_a_page_in_the_readers_language(app, topics, monkeypatch):
    reader_id = add_reader(app, "li.lei@example.com", topic_ids=[topics[NEWS]])
    download = f"/preferences/{link(app, Purpose.PREFERENCES, s=reader_id)}/data.json"

    def broken(subscriber_id):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(subscriptions, "export_data", broken)
    answer = app.test_client().get(download)

    assert answer.status_code == 500
    assert '<html lang="zh-CN">' in html(answer)
    assert "服务器出了点问题，请稍后再试。" in html(answer)
    assert "secret internals" not in html(answer)
    assert "Traceback" not in html(answer)


def test_saving_preferences_keeps_a_section_staff_have_archived(app, topics):
    reader_id = add_reader(
        app, "keeper@example.com", SubscriberStatus.ACTIVE, [topics[NEWS], topics[HOT]]
    )
    with app.app_context():
        db.session.get(Topic, topics[HOT]).active = False
        db.session.commit()
        token = make_token(Purpose.PREFERENCES, {"s": reader_id})
    client = app.test_client()
    page = client.get(f"/preferences/{token}").get_data(as_text=True)
    answer = client.post(
        f"/preferences/{token}",
        data={
            "csrf_token": csrf_token(page),
            "name": "",
            "locale": "zh",
            "topics": [topics[NEWS]],
        },
    )
    assert answer.status_code == 302
    with app.app_context():
        kept = {t.id for t in db.session.get(Subscriber, reader_id).topics}
    assert kept == {topics[NEWS], topics[HOT]}
