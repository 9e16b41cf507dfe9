"""The staff side of readers: list, search, filters, pages, CSV import and export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import select

from tests.helpers import add_topics, csrf_token, wait_for
from webapp.extensions import db
from webapp.models import ConsentMethod, Subscriber, SubscriberStatus, SuppressionReason
from webapp.subscriptions import suppress


@pytest.fixture
def topics(app, db_session):
    return add_topics(["质量要闻", "质量热点", "国际动态"])


def add_subscribers(count: int, topics, status=SubscriberStatus.ACTIVE) -> None:
    db.session.add_all(
        Subscriber(
            email=f"reader{n:03d}@example.com",
            name=f"读者{n}",
            status=status,
            topics=[topics[n % len(topics)]],
        )
        for n in range(count)
    )
    db.session.commit()


def listed(html: str) -> list[str]:
    return re.findall(r">(reader\d+@example\.com)</a></td>", html)


def test_an_editor_cannot_see_the_readers(editor_client, topics):
    for path in (
        "/admin/subscribers",
        "/admin/subscribers/export.csv",
        "/admin/subscribers/import",
    ):
        assert editor_client.get(path).status_code == 403


def test_following_next_visits_every_reader_once(staff_client, topics):
    add_subscribers(120, topics)
    seen, url = [], "/admin/subscribers"
    while url:
        html = staff_client.get(url).get_data(as_text=True)
        seen += listed(html)
        match = re.search(r'<a rel="next" href="([^"]+)"', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert len(seen) == 120 and len(set(seen)) == 120
    assert seen[0] == "reader119@example.com"  # newest first


def test_search_and_filters_narrow_the_list(staff_client, topics):
    add_subscribers(30, topics)
    db.session.add(Subscriber(email="left@example.com", status=SubscriberStatus.UNSUBSCRIBED))
    db.session.commit()
    html = staff_client.get("/admin/subscribers?q=reader01").get_data(as_text=True)
    assert sorted(listed(html)) == [f"reader{n:03d}@example.com" for n in range(10, 20)]
    html = staff_client.get("/admin/subscribers?status=unsubscribed").get_data(as_text=True)
    assert "left@example.com" in html and listed(html) == []
    world = topics[2].id
    html = staff_client.get(f"/admin/subscribers?topic={world}").get_data(as_text=True)
    assert sorted(listed(html)) == [f"reader{n:03d}@example.com" for n in range(2, 30, 3)]


def upload(client, text: str, consent: str):
    page = client.get("/admin/subscribers/import").get_data(as_text=True)
    return client.post(
        "/admin/subscribers/import",
        data={
            "csrf_token": csrf_token(page),
            "consent": consent,
            "document": (io.BytesIO(text.encode("utf-8")), "readers.csv"),
        },
        content_type="multipart/form-data",
    )


CSV = (
    "email,name,sections\n"
    "zhang@example.com,张三,质量要闻;国际动态\n"
    "not-an-address,李四,质量要闻\n"
    "ZHANG@example.com,张三丰,质量热点\n"
    "wang@example.com,王五,没有这个栏目\n"
    "gone@example.com,赵六,\n"
)


def test_an_import_reports_every_bad_line_and_merges_duplicates(staff_client, topics):
    suppress("gone@example.com", SuppressionReason.STAFF, source="staff")
    db.session.commit()
    answer = upload(staff_client, CSV, "consented")
    assert answer.status_code == 200
    report = answer.get_data(as_text=True)
    assert "第 3 行" in report and "第 5 行" in report  # the bad address, the unknown section
    assert "没有这个栏目" in report
    assert "第 4 行并入第 2 行" in report
    zhang = db.session.scalar(select(Subscriber).where(Subscriber.email == "zhang@example.com"))
    assert zhang.status == SubscriberStatus.ACTIVE
    assert zhang.consent_method == ConsentMethod.IMPORTED_CONSENTED
    assert {t.name for t in zhang.topics} == {"质量要闻", "国际动态", "质量热点"}
    assert (
        db.session.scalar(select(Subscriber).where(Subscriber.email == "gone@example.com")) is None
    )


def test_an_import_that_asks_for_consent_sends_confirmations(
    staff_client, topics, celery_worker, inbox
):
    answer = upload(staff_client, "email,name,sections\nnew@example.com,新读者,\n", "confirm")
    assert "已排队发送 1 封确认邮件" in answer.get_data(as_text=True)
    [message] = wait_for(lambda: inbox.to("new@example.com"), what="the confirmation")
    assert message["Subject"] == "请确认订阅《工作简报》"
    reader = db.session.scalar(select(Subscriber).where(Subscriber.email == "new@example.com"))
    assert reader.status == SubscriberStatus.PENDING


def test_an_import_needs_a_consent_choice_and_a_csrf_token(staff_client, topics):
    page = staff_client.get("/admin/subscribers/import").get_data(as_text=True)
    answer = staff_client.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf_token(page), "document": (io.BytesIO(b"email\n"), "a.csv")},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 400 and "请选择读者如何同意接收" in answer.get_data(as_text=True)
    answer = staff_client.post("/admin/subscribers/import", data={"consent": "consented"})
    assert answer.status_code == 400
    assert db.session.scalar(select(Subscriber)) is None


def test_a_file_that_is_not_utf8_is_refused_whole(staff_client, topics):
    page = staff_client.get("/admin/subscribers/import").get_data(as_text=True)
    data = "email,name\nli@example.com,李四\n".encode("gbk")
    answer = staff_client.post(
        "/admin/subscribers/import",
        data={
            "csrf_token": csrf_token(page),
            "consent": "consented",
            "document": (io.BytesIO(data), "gbk.csv"),
        },
        content_type="multipart/form-data",
    )
    assert answer.status_code == 400
    assert "gbk.csv" in answer.get_data(as_text=True)
    assert db.session.scalar(select(Subscriber)) is None


def test_the_export_cannot_run_formulas_in_a_spreadsheet(staff_client, topics):
    db.session.add(
        Subscriber(
            email="evil@example.com",
            name='=HYPERLINK("https://evil.example","点我")',
            status=SubscriberStatus.ACTIVE,
            topics=[topics[0]],
        )
    )
    db.session.commit()
    answer = staff_client.get("/admin/subscribers/export.csv")
    assert answer.mimetype == "text/csv"
    text = answer.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == ["email", "name", "status", "sections", "created_at"]
    assert rows[1][1] == '\'=HYPERLINK("https://evil.example","点我")'
    assert rows[1][3] == "质量要闻"
