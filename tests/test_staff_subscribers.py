"""The staff side of readers: list, search, filters, pages, CSV import and export."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.helpers import add_topics
from webapp.extensions import db
from webapp.models import Subscriber, SubscriberStatus


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


# CSV imports (upload, dry run, import in the background): tests/test_readers_import.py


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
