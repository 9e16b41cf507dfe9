"""Readers CSV imports on the staff pages: upload, a dry run in the background, its report,
then the import by a real Celery worker, with its progress, report, audit entry and events."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import func, select

from tests.helpers import add_topics, csrf_token, wait_for
from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    ConsentMethod,
    EventKind,
    ImportStatus,
    Subscriber,
    SubscriberEvent,
    SubscriberImport,
    SubscriberStatus,
    SuppressionReason,
)
from webapp.subscriptions import suppress


@pytest.fixture
def topics(app, db_session):
    return add_topics(["质量要闻", "质量热点", "国际动态"])


def upload(client, text: str, consent: str, filename: str = "readers.csv"):
    page = client.get("/admin/subscribers/import").get_data(as_text=True)
    return client.post(
        "/admin/subscribers/import",
        data={
            "csrf_token": csrf_token(page),
            "consent": consent,
            "document": (io.BytesIO(text.encode("utf-8")), filename),
        },
        content_type="multipart/form-data",
    )


def job_path(answer) -> str:
    assert answer.status_code == 302, answer.get_data(as_text=True)
    path = answer.headers["Location"]
    assert re.fullmatch(r"/admin/subscribers/import/\d+", path), path
    return path


def settled(client, path: str, status: str) -> str:
    """The import's page once the worker has brought the job to `status`, read as staff
    would: through its progress.json, then the page."""
    wait_for(
        lambda: client.get(f"{path}/progress.json").get_json()["status"] == status,
        timeout=60,
        what=f"the import to be {status}",
    )
    return client.get(path).get_data(as_text=True)


def start(client, path: str, page: str):
    return client.post(f"{path}/run", data={"csrf_token": csrf_token(page)})


def readers() -> int:
    db.session.rollback()  # see what the worker committed
    return db.session.scalar(select(func.count()).select_from(Subscriber))


def figures(page: str, section: str) -> dict[str, int]:
    """The counts table of the page's `section` (dry-run or report)."""
    part = page[page.index(f'id="{section}"') :]
    cells = re.findall(r'<td data-count="(\w+)">([\d,]+)</td>', part)[:9]
    return {name: int(value.replace(",", "")) for name, value in cells}


CSV = (
    "email,name,sections\n"
    "zhang@example.com,张三,质量要闻;国际动态\n"
    "not-an-address,李四,质量要闻\n"
    "ZHANG@example.com,张三丰,质量热点\n"
    "wang@example.com,王五,没有这个栏目;质量热点\n"
    "gone@example.com,赵六,\n"
    "zhao@example.com,赵七,没有这个栏目\n"
)


def test_editors_cannot_import_readers(editor_client, topics):
    assert editor_client.get("/admin/subscribers/import").status_code == 403
    assert editor_client.get("/admin/subscribers/import/1").status_code == 403
    assert editor_client.get("/admin/subscribers/import/1/report.csv").status_code == 403
    assert editor_client.post("/admin/subscribers/import/1/run").status_code in (400, 403)


def test_a_dry_run_changes_nothing_and_the_import_matches_its_report(
    staff_client, topics, celery_worker
):
    suppress("gone@example.com", SuppressionReason.STAFF, source="staff")
    db.session.commit()
    path = job_path(upload(staff_client, CSV, "consented"))
    page = settled(staff_client, path, "checked")

    assert readers() == 0  # the dry run wrote nothing
    assert "试运行报告：还没有任何改动" in page
    dry = figures(page, "dry-run")
    assert dry["added"] == 2 and dry["errors"] == 2 and dry["duplicates"] == 1
    assert (dry["warnings"], dry["suppressed"]) == (1, 1)
    # Every row with something to say, by line, in the catalog's words.
    assert "第 3 行" in page and "“not-an-address”不是有效的电子邮箱地址：缺少 @。" in page
    assert "第 4 行" in page and "与第 2 行地址相同，已并入该行。" in page
    assert "没有这个栏目：没有这个栏目（这一行的其他栏目照常导入）" in page  # line 5
    assert "这一行的栏目（没有这个栏目）都不存在或已不再开放，没有导入。" in page  # line 7

    start(staff_client, path, page)
    page = settled(staff_client, path, "done")
    assert figures(page, "report") == dry
    assert "与试运行的报告一致。" in page
    db.session.rollback()
    zhang = db.session.scalar(select(Subscriber).where(Subscriber.email == "zhang@example.com"))
    assert zhang.status == SubscriberStatus.ACTIVE
    assert zhang.consent_method == ConsentMethod.IMPORTED_CONSENTED
    assert {t.name for t in zhang.topics} == {"质量要闻", "国际动态", "质量热点"}
    # The unknown section is left out, the known one applies.
    wang = db.session.scalar(select(Subscriber).where(Subscriber.email == "wang@example.com"))
    assert [t.name for t in wang.topics] == ["质量热点"]
    assert readers() == 2

    # The audit log names the import and its figures; each reader's event names the import.
    job_id = int(path.rsplit("/", 1)[1])
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "import-readers"))
    assert entry.staff_email == "admin@example.org"
    assert entry.detail.startswith(f"#{job_id} readers.csv (consented): added 2, updated 0")
    details = db.session.scalars(
        select(SubscriberEvent.detail).where(SubscriberEvent.kind == EventKind.IMPORTED)
    ).all()
    assert [json.loads(d)["import"] for d in details] == [job_id, job_id]
    # The uploaded list is not kept once it is imported.
    assert db.session.get(SubscriberImport, job_id).data is None
    # The same import cannot run twice.
    start(staff_client, path, page)
    assert readers() == 2


def test_the_report_csv_has_every_row_in_the_staff_members_language(
    staff_client, topics, celery_worker
):
    path = job_path(upload(staff_client, CSV, "consented"))
    settled(staff_client, path, "checked")
    answer = staff_client.get(f"{path}/report.csv?lang=en")
    assert answer.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == ["Line", "email", "Outcome", "Details"]
    by_line = {row[0]: row[1:] for row in rows[1:]}
    assert by_line["2"] == ["zhang@example.com", "Added", ""]
    assert by_line["3"] == [
        "not-an-address",
        "Error, not imported",
        "“not-an-address” is not a valid email address: it has no @.",
    ]
    assert by_line["4"][1:] == ["Duplicate, merged", "The same address as line 2; merged into it."]
    assert by_line["5"] == [
        "wang@example.com",
        "Added",
        "unknown section: 没有这个栏目 (the row's other sections are imported)",
    ]
    assert sorted(by_line, key=int) == ["2", "3", "4", "5", "6", "7"]


def test_thousands_of_rows_import_through_the_worker_with_progress(
    staff_client, topics, celery_worker
):
    rows = [f"reader{n}@example.com,读者{n},{topics[n % 3].name}" for n in range(6000)]
    rows[10] = "reader10@example.com,读者10,质量要闻;停刊的栏目"
    path = job_path(upload(staff_client, "email,name,sections\n" + "\n".join(rows), "consented"))
    progress = staff_client.get(f"{path}/progress.json").get_json()
    assert progress["status"] in ("checking", "checked")
    page = settled(staff_client, path, "checked")
    assert figures(page, "dry-run")["added"] == 6000
    assert figures(page, "dry-run")["warnings"] == 1
    assert readers() == 0

    start(staff_client, path, page)
    page = settled(staff_client, path, "done")
    assert figures(page, "report")["added"] == 6000
    assert readers() == 6000
    assert staff_client.get(f"{path}/progress.json").get_json()["percent"] == 100
    imported = db.session.scalar(
        select(func.count()).where(SubscriberEvent.kind == EventKind.IMPORTED)
    )
    assert imported == 6000


def test_an_import_that_asks_for_consent_sends_confirmations(
    staff_client, topics, celery_worker, inbox
):
    path = job_path(
        upload(staff_client, "email,name,sections\nnew@example.com,新读者,\n", "confirm")
    )
    page = settled(staff_client, path, "checked")
    assert figures(page, "dry-run")["confirmations"] == 1
    assert inbox.to("new@example.com") == []  # a dry run sends nothing
    start(staff_client, path, page)
    page = settled(staff_client, path, "done")
    assert figures(page, "report")["confirmations"] == 1
    [message] = wait_for(lambda: inbox.to("new@example.com"), what="the confirmation")
    assert message["Subject"] == "请确认订阅《工作简报》"
    db.session.rollback()
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
    assert db.session.scalar(select(SubscriberImport)) is None


def test_a_file_that_is_not_utf8_is_refused_whole(staff_client, topics, celery_worker):
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
    path = job_path(answer)
    page = settled(staff_client, path, "failed")
    assert "gbk.csv" in page and "第 2 行不是 UTF-8" in page
    assert "按这个报告导入" not in page
    assert readers() == 0


def test_without_a_worker_the_upload_answers_at_once_and_the_page_says_it_waits(
    staff_client, topics
):
    path = job_path(upload(staff_client, CSV, "consented"))
    page = staff_client.get(path).get_data(as_text=True)
    assert "正在检查（试运行）" in page
    assert 'src="/static/import_progress.js"' in page  # the live poller
    assert f'href="{path}"' in page  # without JavaScript: reload
    job = db.session.scalar(select(SubscriberImport))
    assert (job.status, job.filename, job.consented) == (ImportStatus.CHECKING, "readers.csv", True)
    assert job.data == CSV.encode()


def test_a_dry_run_then_the_import_in_a_real_browser(
    app, db_session, topics, celery_worker, live_server, chromium, tmp_path
):
    """The progress updates by itself (the static poller, under the site's CSP), the dry run
    changes nothing, and the import's report matches it."""
    from playwright.sync_api import expect, sync_playwright

    from tests.helpers import STAFF_PASSWORD
    from webapp.models import StaffRole
    from webapp.staff import create_staff

    create_staff("importer@example.org", STAFF_PASSWORD, StaffRole.ADMIN)
    db.session.commit()
    rows = [f"duzhe{n}@example.com,读者{n},{topics[n % 3].name}" for n in range(3000)]
    rows[5] = "坏地址,读者5,质量要闻"
    path = tmp_path / "readers.csv"
    path.write_text("email,name,sections\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(locale="zh-CN").new_page()
        refused = []  # scripts the Content-Security-Policy refused, if any
        page.on(
            "console",
            lambda message: "Content Security Policy" in message.text and refused.append(message),
        )
        page.goto(f"{live_server}/admin/login")
        page.get_by_label("邮箱").fill("importer@example.org")
        page.get_by_label("密码").fill(STAFF_PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.goto(f"{live_server}/admin/subscribers/import")
        page.locator('input[type="file"]').set_input_files(str(path))
        page.get_by_label("他们已经同意（例如线下登记）", exact=False).check()
        page.get_by_role("button", name="导入").click()
        # No reload by hand: the poller brings the report when the dry run ends.
        expect(page.get_by_role("heading", name="试运行报告：还没有任何改动")).to_be_visible(
            timeout=60_000
        )
        expect(page.locator('#dry-run td[data-count="added"]')).to_have_text("2,999")
        expect(page.get_by_text("“坏地址”不是有效的电子邮箱地址：缺少 @。")).to_be_visible()
        assert readers() == 0
        page.get_by_role("button", name="按这个报告导入").click()
        expect(page.get_by_role("heading", name="导入结果")).to_be_visible(timeout=60_000)
        expect(page.locator('#report td[data-count="added"]')).to_have_text("2,999")
        expect(page.get_by_text("与试运行的报告一致。")).to_be_visible()
        assert refused == []
        browser.close()
    assert readers() == 2999
