"""Readership: counted links and page views, without tracking anyone (issue 19).

A real digest goes out through a real Celery worker to aiosmtpd; the reader follows its
links; the counters go up, and nothing about the reader is stored in the database or Redis.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import lxml.html
import pytest
from sqlalchemy import select, text, update

from tests.helpers import csrf_token, wait_for
from webapp import readership, site_settings
from webapp.extensions import db, redis_client
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import (
    Issue,
    IssueStatus,
    ReadCount,
    SectionDepartures,
    Subscriber,
    SubscriberStatus,
    TopicRecipients,
    utcnow,
)
from webapp.publishing import publish_issue

READER = "han.meimei@example.com"
READER_IP = "203.0.113.77"
READER_AGENT = "Mozilla/5.0 (Macintosh) ReaderMail/7.1 marker-7f3a"
SOURCE = "https://www.samr.gov.cn/xw/zj/202208/t20220815_345678.html"


def make_issue(topics, *, mode: str = "leads") -> int:
    issue = create_issue("第九期", period="2022年第9期", number=9)
    issue.content_mode = mode
    for topic in topics:
        add_article(
            issue,
            topic,
            f"{topic.name}的文章",
            f"{topic.name}栏目的正文。",
            lead=f"{topic.name}的导语。",
            source_name="市场监管总局",
            source_url=SOURCE,
        )
    db.session.commit()
    return issue.id


def send_to_reader(app, issue_id: int, inbox):
    result = app.test_cli_runner().invoke(args=["publish", str(issue_id)])
    assert result.exit_code == 0, result.output

    def sent():
        db.session.expire_all()
        return db.session.get(Issue, issue_id).status == IssueStatus.SENT

    wait_for(sent, what="the issue to be sent")
    [message] = inbox.to(READER)
    return message


def links(message) -> tuple[str, str, str]:
    """(阅读全文, source link, plain text) of the first article in a received digest."""
    text_part, html_part = message.get_payload()
    page = lxml.html.fromstring(html_part.get_content().encode())
    [read_more, *_] = [a.get("href") for a in page.iter("a") if "阅读全文" in a.text_content()]
    [source, *_] = [a.get("href") for a in page.cssselect(".article-source a")]
    return read_more, source, text_part.get_content()


def click(app, url: str, *, agent: str = READER_AGENT, method: str = "GET", headers=None):
    client = app.test_client(use_cookies=False)
    return client.open(
        urlsplit(url).path,
        method=method,
        headers={"User-Agent": agent, **(headers or {})},
        environ_base={"REMOTE_ADDR": READER_IP},
    )


def counts(issue_id: int) -> dict[tuple[int, str], tuple[int, int]]:
    db.session.expire_all()
    rows = db.session.scalars(select(ReadCount).where(ReadCount.issue_id == issue_id))
    totals: dict[tuple[int, str], list[int]] = {}
    for row in rows:
        pair = totals.setdefault((row.article_id, row.kind), [0, 0])
        pair[0] += row.counted
        pair[1] += row.filtered
    return {key: tuple(value) for key, value in totals.items()}


def everything_stored(app) -> str:
    """Every row of every table and every Redis key and value, as one text to search."""
    dump = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                dump.append(f"{table.name}: {tuple(row)}")
    client = redis_client()
    for key in client.scan_iter():
        kind = client.type(key).decode()
        if kind == "hash":
            value = client.hgetall(key)
        elif kind == "string":
            value = client.get(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind in ("set", "zset"):
            value = client.zrange(key, 0, -1) if kind == "zset" else client.smembers(key)
        else:
            value = ""
        dump.append(f"redis {key!r}: {value!r}")
    return "\n".join(dump)


@pytest.fixture
def reader_and_issue(app, db_session):
    news, hot = ensure_topics(["质量要闻", "质量热点"])
    reader = Subscriber(
        email=READER, name="韩梅梅", status=SubscriberStatus.ACTIVE, topics=[news, hot]
    )
    db.session.add(reader)
    db.session.commit()
    return reader.id, make_issue([news, hot])


def test_a_reader_follows_read_more_and_the_source_and_only_the_counters_change(
    app, db_session, celery_worker, inbox, reader_and_issue
):
    reader_id, issue_id = reader_and_issue
    message = send_to_reader(app, issue_id, inbox)
    read_more, source, plain = links(message)
    article_id = db.session.scalars(select(Issue).where(Issue.id == issue_id)).one().articles[0].id
    # The email links through /r/; the plain-text part carries the same counted links.
    assert read_more.startswith("https://bulletin.example.org/r/")
    assert source.startswith("https://bulletin.example.org/r/")
    assert read_more in plain and source in plain
    assert SOURCE not in plain

    before = everything_stored(app)
    answer = click(app, read_more)
    assert answer.status_code == 302
    assert answer.headers["Location"] == (
        f"https://bulletin.example.org/issues/{issue_id}/articles/{article_id}"
    )
    assert "Set-Cookie" not in answer.headers
    # Never cached, no Referer to the target, and the site's security headers all the same.
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    answer = click(app, source)
    assert answer.status_code == 302
    assert answer.headers["Location"] == SOURCE
    assert "Set-Cookie" not in answer.headers

    # In Redis: one hourly hash of counters, whose fields name issue, article and kind only.
    # (Other keys may change meanwhile: another test run can share this Redis database.)
    mid = everything_stored(app)
    assert READER_IP not in mid and "marker-7f3a" not in mid
    in_redis = set(mid.splitlines()) - set(before.splitlines())
    assert not [line for line in in_redis if READER in line]
    [counters] = [line for line in in_redis if readership.key_prefix() in line]
    assert counters.startswith(f"redis b'{readership.counts_prefix()}")
    assert set(re.findall(r"b'([^']+)': b'1'", counters)) == {
        f"{issue_id}:{article_id}:web:c",
        f"{issue_id}:{article_id}:source:c",
    }

    assert readership.flush() == 2
    assert counts(issue_id) == {(article_id, "web"): (1, 0), (article_id, "source"): (1, 0)}

    # In the database: nothing changed but the counters and the flush ledger.
    after = everything_stored(app)
    new_lines = set(after.splitlines()) - set(before.splitlines())
    assert new_lines and all(
        line.startswith(("read_counts:", "read_count_flushes:")) for line in new_lines
    ), new_lines
    for trace in (READER_IP, "marker-7f3a", "ReaderMail"):
        assert trace not in after
    assert set(ReadCount.__table__.columns.keys()) == {
        "issue_id", "article_id", "kind", "hour", "counted", "filtered"
    }  # fmt: skip
    assert db.session.get(Subscriber, reader_id).status == SubscriberStatus.ACTIVE


def test_every_reader_of_a_section_set_gets_the_same_counted_links(app, db_session):
    news, hot = ensure_topics(["质量要闻", "质量热点"])
    for n in range(3):
        db.session.add(
            Subscriber(email=f"r{n}@example.com", status=SubscriberStatus.ACTIVE, topics=[news])
        )
    issue_id = make_issue([news, hot])
    from webapp.digests import Recipient, compose

    publish_issue(issue_id)
    db.session.commit()
    bodies = []
    for reader in db.session.scalars(select(Subscriber).order_by(Subscriber.id)):
        recipient = Recipient(0, reader.id, reader.email, "", "zh", True)
        _, data = compose(issue_id, recipient, frozenset({news.id}))
        from email import message_from_bytes, policy

        html = message_from_bytes(data, policy=policy.default).get_payload()[1].get_content()
        bodies.append(sorted(re.findall(r'href="(https://bulletin\.example\.org/r/[^"]+)"', html)))
    assert bodies[0] and bodies[0] == bodies[1] == bodies[2]


def test_a_tampered_token_gets_404_a_post_405_and_neither_counts(app, db_session, reader_and_issue):
    _, issue_id = reader_and_issue
    publish_issue(issue_id)
    db.session.commit()
    article = db.session.get(Issue, issue_id).articles[0]
    with app.test_request_context():
        good = readership.counted_url(issue_id, article.id, readership.LinkKind.WEB)
    token = urlsplit(good).path.rsplit("/", 1)[1]
    payload, signature = token.rsplit(".", 1)
    for bad in (
        payload + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"),
        "WzEsMiwid2ViIl0." + signature,  # [1,2,"web"]: another article, the old signature
        "not-a-token",
    ):
        assert click(app, f"/r/{bad}").status_code == 404
    assert click(app, good, method="POST").status_code == 405  # only GET and HEAD follow
    readership.flush()
    assert counts(issue_id) == {}


@pytest.mark.parametrize(
    ("agent", "method", "headers"),
    [
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", "GET", {}),
        ("Mozilla/5.0 (Windows NT 10.0) Microsoft Defender SafeLinks", "GET", {}),
        ("Mozilla/5.0 (compatible; bingbot/2.0)", "GET", {}),
        (READER_AGENT, "HEAD", {}),
        (READER_AGENT, "GET", {"Sec-Purpose": "prefetch;prerender"}),
        (READER_AGENT, "GET", {"Purpose": "prefetch"}),
        (READER_AGENT, "GET", {"X-Purpose": "preview"}),
    ],
)
def test_scanners_and_prefetches_are_filtered_not_counted(
    app, db_session, reader_and_issue, agent, method, headers
):
    _, issue_id = reader_and_issue
    publish_issue(issue_id)
    db.session.commit()
    article = db.session.get(Issue, issue_id).articles[0]
    with app.test_request_context():
        url = readership.counted_url(issue_id, article.id, readership.LinkKind.SOURCE, SOURCE)
    answer = click(app, url, agent=agent, method=method, headers=headers)
    assert answer.status_code == 302 and answer.headers["Location"] == SOURCE
    readership.flush()
    assert counts(issue_id) == {(article.id, "source"): (0, 1)}


def test_web_pages_count_views_without_cookies(app, db_session, reader_and_issue):
    _, issue_id = reader_and_issue
    publish_issue(issue_id)
    db.session.commit()
    article_id = db.session.get(Issue, issue_id).articles[0].id
    for path in (f"/issues/{issue_id}", f"/issues/{issue_id}/articles/{article_id}"):
        answer = click(app, path)
        assert answer.status_code == 200
        assert "Set-Cookie" not in answer.headers
    click(app, f"/issues/{issue_id}", agent="Googlebot/2.1 (+http://www.google.com/bot.html)")
    readership.flush()
    assert counts(issue_id) == {
        (readership.ISSUE_PAGE, "page"): (1, 1),
        (article_id, "page"): (1, 0),
    }


def test_even_a_language_switch_sets_no_cookie_on_a_counted_link(app, db_session, reader_and_issue):
    _, issue_id = reader_and_issue
    publish_issue(issue_id)
    db.session.commit()
    article_id = db.session.get(Issue, issue_id).articles[0].id
    with app.test_request_context():
        url = readership.counted_url(issue_id, article_id, readership.LinkKind.WEB)
    answer = click(app, url + "?lang=en")
    assert answer.status_code == 302 and "Set-Cookie" not in answer.headers


def test_with_counting_off_emails_link_straight_to_their_targets(
    app, db_session, celery_worker, inbox, reader_and_issue, staff_client
):
    _, issue_id = reader_and_issue
    page = staff_client.get("/admin/settings").get_data(as_text=True)
    staff_client.post("/admin/settings", data={"csrf_token": csrf_token(page)})
    assert site_settings.get_value("counted_links") is False
    message = send_to_reader(app, issue_id, inbox)
    read_more, source, plain = links(message)
    article_id = db.session.get(Issue, issue_id).articles[0].id
    assert read_more == f"https://bulletin.example.org/issues/{issue_id}/articles/{article_id}"
    assert source == SOURCE
    assert "/r/" not in plain
    # A counted link from an older email still takes the reader there, and counts nothing.
    with app.test_request_context():
        old = readership.counted_url(issue_id, article_id, readership.LinkKind.WEB)
    assert click(app, old).headers["Location"] == read_more
    click(app, f"/issues/{issue_id}")
    readership.flush()
    assert counts(issue_id) == {}


def test_a_flush_that_dies_midway_loses_nothing_and_counts_nothing_twice(
    app, db_session, reader_and_issue
):
    _, issue_id = reader_and_issue
    publish_issue(issue_id)
    db.session.commit()
    article_id = db.session.get(Issue, issue_id).articles[0].id
    client = redis_client()
    hour = int(utcnow().timestamp()) // 3600
    field = f"{issue_id}:{article_id}:web:c"
    # Died after taking the counters (RENAME) and before writing them: written next time.
    client.hset(f"{readership.flushing_prefix()}{hour}:dead1", field, 5)
    client.hincrby(f"{readership.counts_prefix()}{hour}", field, 2)
    assert readership.flush() == 7
    assert counts(issue_id) == {(article_id, "web"): (7, 0)}
    # Died after committing and before deleting the batch: the batch is not written twice.
    client.hset(f"{readership.flushing_prefix()}{hour}:dead1", field, 5)
    assert readership.flush() == 0
    assert counts(issue_id) == {(article_id, "web"): (7, 0)}
    assert not list(client.scan_iter(match=f"{readership.key_prefix()}*"))


def test_clicks_on_links_of_an_unsent_issue_are_dropped(app, db_session, reader_and_issue):
    """Previews and test sends carry counted links too; staff clicking them count nothing."""
    _, issue_id = reader_and_issue
    article_id = db.session.get(Issue, issue_id).articles[0].id
    with app.test_request_context():
        url = readership.counted_url(issue_id, article_id, readership.LinkKind.WEB)
    assert click(app, url).status_code == 302
    readership.flush()
    assert counts(issue_id) == {}


def test_the_report_shows_sections_articles_rates_and_unsubscribes(app, db_session, editor_client):
    news, hot = ensure_topics(["质量要闻", "质量热点"])
    readers = [
        Subscriber(email=f"r{n}@example.com", status=SubscriberStatus.ACTIVE, topics=[news])
        for n in range(4)
    ] + [Subscriber(email="both@example.com", status=SubscriberStatus.ACTIVE, topics=[news, hot])]
    db.session.add_all(readers)
    issue_id = make_issue([news, hot])
    publish_issue(issue_id)
    db.session.commit()
    issue = db.session.get(Issue, issue_id)
    news_article, hot_article = issue.articles
    assert {(r.topic_id, r.recipients) for r in db.session.scalars(select(TopicRecipients))} == {
        (news.id, 5),
        (hot.id, 1),
    }
    for kind, article, n in (("web", news_article, 3), ("source", news_article, 1),
                             ("web", hot_article, 1)):  # fmt: skip
        for _ in range(n):
            readership.count(issue_id, article.id, readership.LinkKind(kind), filtered=False)
    readership.count(issue_id, news_article.id, readership.LinkKind.WEB, filtered=True)
    readership.flush()
    # One reader stops 质量热点 within the week, another leaves altogether; a third leaves
    # after the week and is not counted (their counts moved to the hour 8 days on).
    from webapp.subscriptions import unsubscribe

    unsubscribe(readers[1].id)
    db.session.commit()
    late = issue.published_at.replace(minute=0, second=0, microsecond=0) + timedelta(days=8)
    db.session.execute(update(SectionDepartures).values(hour=late))
    unsubscribe(readers[4].id, hot.id)
    unsubscribe(readers[0].id)
    db.session.commit()

    page = editor_client.get(f"/admin/issues/{issue_id}/readership")
    assert page.status_code == 200
    tree = lxml.html.fromstring(page.get_data())
    news_row = tree.cssselect(f'#readership-sections tr[data-section="{news.id}"]')[0]
    cell = {k: news_row.cssselect(f"td[data-{k}]")[0].text_content() for k in
            ("recipients", "clicks", "rate", "unsubscribes")}  # fmt: skip
    assert cell == {"recipients": "5", "clicks": "4", "rate": "800.0", "unsubscribes": "1"}
    hot_row = tree.cssselect(f'#readership-sections tr[data-section="{hot.id}"]')[0]
    assert hot_row.cssselect("td[data-rate]")[0].text_content() == "1000.0"
    assert hot_row.cssselect("td[data-unsubscribes]")[0].text_content() == "1"
    article_row = tree.cssselect(f'#readership-articles tr[data-article="{news_article.id}"]')[0]
    assert article_row.cssselect("td[data-read-more]")[0].text_content() == "3"
    assert article_row.cssselect("td[data-source]")[0].text_content() == "1"
    assert tree.cssselect('[data-figure="left"] dd')[0].text_content() == "1"
    note = tree.cssselect("#scanner-note")[0].text_content()
    assert "5 次计入，1 次判为链接扫描未计入" in note

    csv_answer = editor_client.get(f"/admin/issues/{issue_id}/readership.csv")
    assert csv_answer.status_code == 200 and csv_answer.mimetype == "text/csv"
    body = csv_answer.get_data(as_text=True)
    assert '"section","质量要闻","","5","4","800.0","","","","1"' in body
    assert '"article","质量要闻","质量要闻的文章","","4","","3","1","0",""' in body

    dashboard = editor_client.get("/admin/").get_data(as_text=True)
    assert 'id="readership-chart"' in dashboard
    assert "第9期" in dashboard


def test_the_report_is_in_english_too(app, editor_client):
    # Outside the test's app context: Flask-Babel keeps the request's language in `g`.
    with app.app_context():
        issue_id = create_issue("第九期").id
        db.session.commit()
    html = editor_client.get(f"/admin/issues/{issue_id}/readership?lang=en").get_data(as_text=True)
    assert "Readership: 第九期" in html and "Clicks per 1,000 recipients" in html


def test_nothing_about_a_request_is_logged(app, db_session, reader_and_issue, caplog):
    _, issue_id = reader_and_issue
    publish_issue(issue_id)
    db.session.commit()
    article_id = db.session.get(Issue, issue_id).articles[0].id
    with app.test_request_context():
        url = readership.counted_url(issue_id, article_id, readership.LinkKind.WEB)
    with caplog.at_level("DEBUG"):
        click(app, url)
    assert READER_IP not in caplog.text and "marker-7f3a" not in caplog.text


def test_the_development_server_logs_no_reader_address(
    app, db_session, reader_and_issue, live_server, caplog
):
    import http.client

    _, issue_id = reader_and_issue
    publish_issue(issue_id)
    db.session.commit()
    article_id = db.session.get(Issue, issue_id).articles[0].id
    with app.test_request_context():
        path = urlsplit(readership.counted_url(issue_id, article_id, readership.LinkKind.WEB)).path
    host, port = urlsplit(live_server).hostname, urlsplit(live_server).port
    # Alembic's fileConfig (the test schema's migrations) disabled the loggers it found.
    logger = logging.getLogger("werkzeug")
    disabled, logger.disabled = logger.disabled, False
    try:
        with caplog.at_level("INFO", logger="werkzeug"):
            for url in (path, f"/issues/{issue_id}", "/privacy"):
                connection = http.client.HTTPConnection(host, port, timeout=10)
                connection.request("GET", url, headers={"User-Agent": READER_AGENT})
                connection.getresponse().read()
                connection.close()
            wait_for(lambda: "/privacy" in caplog.text, what="the server's request lines")
    finally:
        logger.disabled = disabled
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    [redirect] = [line for line in lines if "/r/" in line]
    [page] = [line for line in lines if f"/issues/{issue_id}" in line]
    assert "127.0.0.1" not in redirect and "127.0.0.1" not in page and " 302 " in redirect
    assert "marker-7f3a" not in caplog.text


def test_sqlite_and_postgresql_keep_hours_apart(app, db_session, reader_and_issue):
    _, issue_id = reader_and_issue
    publish_issue(issue_id)
    db.session.commit()
    article_id = db.session.get(Issue, issue_id).articles[0].id
    client = redis_client()
    hour = int(utcnow().timestamp()) // 3600
    for h in (hour - 1, hour):
        client.hincrby(f"{readership.counts_prefix()}{h}", f"{issue_id}:{article_id}:web:c", 2)
    readership.flush()
    hours = db.session.execute(text("SELECT COUNT(*) FROM read_counts")).scalar()
    assert hours == 2
    assert counts(issue_id) == {(article_id, "web"): (4, 0)}


def test_the_privacy_page_says_what_is_counted_and_what_is_not(app):
    # Requests outside a test app context: Flask-Babel keeps the page's language in `g`.
    page = app.test_client(use_cookies=False).get("/privacy")
    assert page.status_code == 200 and "Set-Cookie" not in page.headers
    html = page.get_data(as_text=True)
    assert "没有跟踪像素" in html and "链接统计目前已开启" in html
    with app.app_context():
        site_settings.set_value("counted_links", False)
        db.session.commit()
    html = app.test_client().get("/privacy?lang=en").get_data(as_text=True)
    assert "no tracking pixel" in html and "Link counting is currently off" in html


def test_the_departures_migration_counts_the_unsubscribes_already_logged(app, tmp_path):
    """Issues sent before the counts existed keep their week's unsubscribes in the report."""
    from flask_migrate import upgrade

    from webapp import create_app

    other = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'old.db'}"})
    # Building an app makes its Celery app the current one: give this run's back.
    app.extensions["celery"].set_current()
    app.extensions["celery"].set_default()
    with other.app_context():
        upgrade(revision="0015")
        now = "'2026-01-01 10:20:00'"
        rows = ["INSERT INTO topics (id, name, slug, position, active, created_at) "
                f"VALUES ({t}, 'n{t}', 'n{t}', 0, 1, {now})" for t in (1, 2)]  # fmt: skip
        for n in (1, 2):
            rows += [
                "INSERT INTO subscribers (id, email, name, status, locale, soft_bounces, "
                f"link_key, created_at, updated_at) VALUES ({n}, 'r{n}@example.com', '', "
                f"'active', 'zh', 0, 'k{n}', {now}, {now})",
                f"INSERT INTO subscriber_topics VALUES ({n}, 1)",
            ]
        rows += [
            "INSERT INTO subscriber_events (subscriber_id, kind, source, detail, created_at) "
            f"""VALUES (1, 'topics_changed', 'web', '{{"added": [], "removed": [2]}}', {now})""",
            "INSERT INTO subscriber_events (subscriber_id, kind, source, detail, created_at) "
            f"VALUES (2, 'unsubscribed', 'web', '', {now})",
        ]
        with db.engine.begin() as conn:
            for row in rows:
                conn.execute(text(row))
        upgrade()
        counted = {(d.topic_id, d.hour.isoformat(), d.readers) for d in
                   db.session.scalars(select(SectionDepartures))}  # fmt: skip
        hour = "2026-01-01T10:00:00+00:00"
        assert counted == {(2, hour, 1), (readership.LEFT_ALTOGETHER, hour, 1), (1, hour, 1)}
        db.session.remove()
        db.engine.dispose()
