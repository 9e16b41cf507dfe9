"""The publication's identity: name, organization, postal address, contact, colour and logo,
set by an admin on /admin/identity, shown in every email and page; and no publishing in
production without a postal address (the staff site, the CLI, the sweeper)."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from email import message_from_bytes, policy
from email.utils import parseaddr

import lxml.html
import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.helpers import csrf_token
from webapp import delivery, identity, notifications, preview, publishing, site_settings, sweeper
from webapp.digests import digest_for
from webapp.extensions import db
from webapp.issues import add_article, create_issue, ensure_topics
from webapp.models import (
    AuditEntry,
    Delivery,
    Issue,
    IssueStatus,
    SiteImage,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

ADDRESS = "上海市徐汇区华山路 1954 号 200030"


@pytest.fixture
def issue(app, db_session) -> Issue:
    [topic] = ensure_topics(["质量要闻"])
    db.session.add_all(
        [
            Subscriber(email="zh@example.com", status=SubscriberStatus.ACTIVE, topics=[topic]),
            Subscriber(
                email="en@example.com", status=SubscriberStatus.ACTIVE, topics=[topic], locale="en"
            ),
        ]
    )
    item = create_issue("第十期")
    add_article(item, topic, "文章", "正文。", lead="导语。")
    db.session.commit()
    return item


def identity_form(client, **values) -> dict:
    page = client.get("/admin/identity").get_data(as_text=True)
    document = lxml.html.fromstring(page)
    form = document.get_element_by_id("identity-form")
    data = {field.name: field.value or "" for field in form.inputs if field.name}
    data.pop("submit", None)
    return {**data, "csrf_token": csrf_token(page), **values}


def set_identity(client, **values):
    return client.post("/admin/identity", data=identity_form(client, **values))


def png(width: int, height: int, mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), (20, 60, 120, 255) if mode == "RGBA" else (20, 60, 120)).save(
        out, "PNG"
    )
    return out.getvalue()


def upload(client, data: bytes, filename: str = "logo.png", alt: str = "研究院标志"):
    page = client.get("/admin/identity").get_data(as_text=True)
    return client.post(
        "/admin/identity/logo",
        data={
            "csrf_token": csrf_token(page),
            "logo": (io.BytesIO(data), filename),
            "logo_alt": alt,
        },
        content_type="multipart/form-data",
    )


def send_all(issue_id: int) -> None:
    batches: list[list[int]] = []
    delivery.dispatch_due(issue_id, lambda _, ids: batches.append(ids))
    for ids in batches:
        delivery.send_batch(issue_id, ids)


def parts(raw: bytes) -> tuple[str, str]:
    message = message_from_bytes(raw, policy=policy.default)
    return message.get_body(("html",)).get_content(), message.get_body(("plain",)).get_content()


# --- defaults and the admin page -----------------------------------------------------------


def test_the_environment_gives_the_defaults(app, db_session):
    site = identity.current()
    assert site.name == "工作简报" and site.name_en == ""
    assert site.postal_address == "北京市海淀区 测试路 1 号"  # POSTAL_ADDRESS in conftest
    assert site.color == "#9b1c1c" and site.logo_url == ""


def test_an_admin_sets_the_identity_and_every_email_and_page_shows_it(
    app, issue, staff_client, inbox
):
    answer = set_identity(
        staff_client,
        bulletin_name="质量发展简报",
        bulletin_name_en="Quality Development Bulletin",
        organization="上海交通大学中国质量发展研究院",
        postal_address=ADDRESS,
        contact="021-6293 2000 · news@example.org",
    )
    assert answer.status_code == 302
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "identity")).one()
    assert "postal_address" in entry.detail and entry.staff_email == "admin@example.org"

    publishing.publish_issue(issue.id)
    db.session.commit()
    send_all(issue.id)
    html, text = parts(inbox.raw_to("zh@example.com")[0])
    for part in (html, text):
        assert "质量发展简报" in part
        assert f"上海交通大学中国质量发展研究院 · {ADDRESS}" in part
        assert "联系我们：021-6293 2000 · news@example.org" in part
    footer = lxml.html.fromstring(html).find_class("footer")[0].text_content()
    assert ADDRESS in footer
    english_html, english_text = parts(inbox.raw_to("en@example.com")[0])
    masthead = lxml.html.fromstring(english_html).find_class("masthead-name")[0]
    assert masthead.text_content() == "Quality Development Bulletin"
    assert "Contact us: 021-6293 2000" in english_text and ADDRESS in english_text

    # The web version: the name in the header, the sender in the footer.
    page = staff_client.get(f"/issues/{issue.id}").get_data(as_text=True)
    document = lxml.html.fromstring(page)
    assert "质量发展简报" in document.find_class("brand")[0].text_content()
    site_footer = document.find_class("site-footer")[0].text_content()
    assert ADDRESS in site_footer and "上海交通大学中国质量发展研究院" in site_footer
    english = staff_client.get(f"/issues/{issue.id}?lang=en").get_data(as_text=True)
    assert "Quality Development Bulletin" in english


def test_english_readers_see_the_english_name_as_the_sender(app, issue, staff_client, inbox):
    """The From name follows the reader's language, in the digest and in notices; the address
    stays MAIL_FROM's. Without an English name everyone sees MAIL_FROM as it is."""
    set_identity(staff_client, bulletin_name_en="Quality Development Bulletin, “QDB”")
    publishing.publish_issue(issue.id)
    newcomer = Subscriber(email="new.en@example.com", status=SubscriberStatus.PENDING, locale="en")
    db.session.add(newcomer)
    db.session.commit()
    send_all(issue.id)
    assert notifications.send_confirmation(newcomer.id)

    def sender(address: str):
        message = message_from_bytes(inbox.raw_to(address)[0], policy=policy.default)
        return message["From"].addresses[0]

    chinese_name, mail_from = parseaddr(app.config["MAIL_FROM"])
    assert (sender("zh@example.com").display_name, sender("zh@example.com").addr_spec) == (
        chinese_name,
        mail_from,
    )
    for english in ("en@example.com", "new.en@example.com"):
        assert sender(english).display_name == "Quality Development Bulletin, “QDB”"
        assert sender(english).addr_spec == mail_from


def test_notices_carry_the_identity_too(app, issue, staff_client, inbox):
    set_identity(staff_client, organization="研究院办公室", postal_address=ADDRESS)
    reader = Subscriber(email="new@example.com", status=SubscriberStatus.PENDING)
    db.session.add(reader)
    db.session.commit()
    assert notifications.send_confirmation(reader.id)
    html, text = parts(inbox.raw_to("new@example.com")[0])
    assert f"研究院办公室 · {ADDRESS}" in html and f"研究院办公室 · {ADDRESS}" in text


def test_a_name_is_required_and_lengths_are_capped(app, staff_client, db_session):
    answer = set_identity(staff_client, bulletin_name="  ")
    assert answer.status_code == 400 and "请填写简报名称" in answer.get_data(as_text=True)
    answer = set_identity(staff_client, contact="电" * 201)
    assert answer.status_code == 400 and "最多 200 个字" in answer.get_data(as_text=True)
    assert identity.current().name == "工作简报"


def test_editors_cannot_change_the_identity(editor_client):
    assert editor_client.get("/admin/identity").status_code == 403
    page = editor_client.get("/admin/issues").get_data(as_text=True)
    answer = editor_client.post("/admin/identity", data={"csrf_token": csrf_token(page)})
    assert answer.status_code == 403


# --- the masthead colour -------------------------------------------------------------------


def test_a_colour_the_masthead_text_cannot_be_read_on_is_refused_with_its_ratio(
    app, staff_client, db_session
):
    answer = set_identity(staff_client, masthead_color="#f87171")
    body = answer.get_data(as_text=True)
    assert answer.status_code == 400
    # #f87171 against the masthead's lighter text (#fde8e8): 2.3:1.
    assert "对比度只有 2.3:1，至少要 4.5:1" in body
    english = staff_client.post(
        "/admin/identity?lang=en", data=identity_form(staff_client, masthead_color="#f87171")
    )
    assert "contrast of only 2.3:1" in english.get_data(as_text=True)
    answer = set_identity(staff_client, masthead_color="blue")
    assert "#RRGGBB" in answer.get_data(as_text=True)
    assert identity.current().color == "#9b1c1c"


def test_a_readable_colour_paints_the_masthead_and_the_site(app, issue, staff_client):
    assert set_identity(staff_client, masthead_color="#1E3A8A").status_code == 302
    assert identity.current().color == "#1e3a8a"
    shown = preview.for_topics(issue, {issue.articles[0].topic_id})
    masthead = lxml.html.fromstring(shown.html).find_class("masthead")[0]
    assert "background:#1e3a8a" in masthead.get("style").replace(" ", "")
    assert "#9b1c1c" not in shown.html
    theme = staff_client.get("/theme.css")
    assert "--accent: #1e3a8a" in theme.get_data(as_text=True)
    page = staff_client.get("/subscribe").get_data(as_text=True)
    assert "/theme.css?v=1e3a8a" in page


def test_contrast_is_computed_as_wcag_says():
    assert identity.contrast("#000000", ("#ffffff",)) == pytest.approx(21.0)
    # The default masthead: 6.9:1 against its lighter text (#fde8e8), 8.1:1 against white.
    assert identity.contrast("#9b1c1c", identity.MASTHEAD_TEXT) == pytest.approx(6.94, abs=0.01)
    with pytest.raises(identity.IdentityError) as refused:
        identity.check_color("#777777")  # 4.48:1 with white, 3.81:1 with #fde8e8
    assert refused.value.params["ratio"] == "3.8"  # the worst of the two, rounded down


# --- the logo ------------------------------------------------------------------------------


def test_an_uploaded_logo_is_sized_for_email_and_served_with_caching_headers(
    app, issue, staff_client, inbox
):
    assert upload(staff_client, png(2000, 400)).status_code == 302
    row = db.session.get(SiteImage, "logo")
    assert (row.web_width, row.web_height) == (1200, 240)
    assert (row.email_width, row.email_height) == (480, 96)  # fits 536 x 96 CSS px
    retina = Image.open(io.BytesIO(row.email_data))
    assert retina.size == (960, 192) and retina.format == "PNG"  # twice, for retina screens

    served = staff_client.get("/logo/email")
    assert served.status_code == 200 and served.mimetype == "image/png"
    assert served.data == row.email_data
    assert "public" in served.headers["Cache-Control"]
    assert "max-age=86400" in served.headers["Cache-Control"]
    again = staff_client.get("/logo/email", headers={"If-None-Match": served.headers["ETag"]})
    assert again.status_code == 304
    assert staff_client.get("/logo/web").mimetype == "image/png"
    assert staff_client.get("/logo/original").status_code == 404

    # The email masthead shows it at its display size, with its alt text, at a stable URL.
    publishing.publish_issue(issue.id)
    db.session.commit()
    send_all(issue.id)
    html, _ = parts(inbox.raw_to("zh@example.com")[0])
    [img] = lxml.html.fromstring(html).find_class("masthead-logo")
    assert img.get("alt") == "研究院标志"
    assert (img.get("width"), img.get("height")) == ("480", "96")
    assert re.match(r"^http.*/logo/email\?v=[0-9a-f]{12}$", img.get("src"))

    # The web pages and the link card (Open Graph) show it too.
    page = lxml.html.fromstring(staff_client.get(f"/issues/{issue.id}").get_data(as_text=True))
    assert page.find_class("brand-logo")
    og = {m.get("property"): m.get("content") for m in page.iter("meta") if m.get("property")}
    assert re.match(r"^http.*/logo/web\?v=", og["og:image"])
    assert og["og:image:alt"] == "研究院标志" and og["og:image:width"] == "1200"


def test_a_small_jpeg_logo_is_never_enlarged(app, staff_client, db_session):
    out = io.BytesIO()
    Image.new("RGB", (200, 60), (10, 10, 10)).save(out, "JPEG")
    assert upload(staff_client, out.getvalue(), "logo.jpg", alt="").status_code == 302
    row = db.session.get(SiteImage, "logo")
    assert (row.email_width, row.email_height) == (200, 60) and row.email_type == "image/jpeg"
    assert identity.current().logo_alt == "工作简报"  # no alt text given: the name


def test_a_gif_logo_keeps_its_transparency_as_png(app, staff_client, db_session):
    frame = Image.new("P", (300, 120), 0)
    frame.putpalette([255, 255, 255, 20, 60, 120] + [0] * 762)
    frame.paste(1, (50, 20, 250, 100))
    out = io.BytesIO()
    frame.save(out, "GIF", transparency=0)
    assert upload(staff_client, out.getvalue(), "logo.gif").status_code == 302
    row = db.session.get(SiteImage, "logo")
    stored = Image.open(io.BytesIO(row.email_data))
    assert row.email_type == "image/png" and stored.mode == "RGBA"
    assert stored.getpixel((0, 0))[3] == 0 and stored.getpixel((150, 60))[3] == 255


@pytest.mark.parametrize(
    ("data", "filename", "says"),
    [
        (b"%PDF-1.4 not an image", "logo.png", "不是完好的图片"),
        (png(400, 100)[:300], "logo.png", "不是完好的图片"),  # truncated
        (b"BM" + png(40, 40), "logo.bmp", "不是完好的图片"),
        (png(8, 8), "logo.png", "至少要 16 像素"),
        (png(20, 20) + b"\0" * (2 * 1024 * 1024), "logo.png", "超过 2 MB"),
    ],
)
def test_what_is_not_a_usable_logo_is_refused(app, staff_client, db_session, data, filename, says):
    answer = upload(staff_client, data, filename)
    assert answer.status_code == 400 and says in answer.get_data(as_text=True)
    assert db.session.get(SiteImage, "logo") is None


def test_other_formats_are_refused_by_name(app, staff_client, db_session):
    out = io.BytesIO()
    Image.new("RGB", (40, 40)).save(out, "BMP")
    answer = upload(staff_client, out.getvalue(), "logo.bmp")
    assert answer.status_code == 400 and "只接受 PNG、JPEG 或 GIF" in answer.get_data(as_text=True)


def test_removing_the_logo_must_be_ticked(app, staff_client, db_session):
    upload(staff_client, png(300, 100))
    page = staff_client.get("/admin/identity").get_data(as_text=True)
    untouched = staff_client.post(
        "/admin/identity/logo/remove", data={"csrf_token": csrf_token(page)}
    )
    assert untouched.status_code == 400 and "请先勾选确认" in untouched.get_data(as_text=True)
    assert db.session.get(SiteImage, "logo") is not None
    removed = staff_client.post(
        "/admin/identity/logo/remove", data={"csrf_token": csrf_token(page), "confirm": "y"}
    )
    assert removed.status_code == 302
    db.session.expire_all()
    assert db.session.get(SiteImage, "logo") is None
    assert staff_client.get("/logo/email").status_code == 404


# --- cached digests ------------------------------------------------------------------------


def test_a_changed_identity_renders_previews_afresh_but_not_an_issue_already_sending(
    app, issue, staff_client
):
    topics = {issue.articles[0].topic_id}
    assert "北京市海淀区" in preview.for_topics(issue, topics).html
    set_identity(staff_client, postal_address=ADDRESS)
    assert ADDRESS in preview.for_topics(issue, topics).html  # not the cached render

    # Once sending starts, its digests are stored: the issue keeps what it started with.
    publishing.publish_issue(issue.id)
    db.session.commit()
    delivery.dispatch_issue(issue.id, lambda *_: None)
    set_identity(staff_client, postal_address="广州市天河区 某路 2 号")
    stored = digest_for(issue.id, frozenset(topics), "zh").template.html
    assert ADDRESS in stored and "广州市" not in stored


# --- no publishing in production without a postal address ---------------------------------


@pytest.fixture
def production_without_address(app, db_session):
    site_settings.set_value("postal_address", "")
    db.session.commit()
    saved, app.config["BULLETIN_ENV"] = app.config["BULLETIN_ENV"], "production"
    yield
    app.config["BULLETIN_ENV"] = saved


REFUSED = "还没有填写邮寄地址，不能发布"


def planned(issue: Issue) -> int:
    return db.session.scalar(select(func.count()).where(Delivery.issue_id == issue.id))


def test_the_web_refuses_to_publish_or_schedule_without_a_postal_address(
    app, issue, staff_client, production_without_address
):
    # The publish page says so before the click.
    page = staff_client.get(f"/admin/issues/{issue.id}/publish").get_data(as_text=True)
    assert (
        REFUSED in lxml.html.fromstring(page).get_element_by_id("identity-problem").text_content()
    )
    answer = staff_client.post(
        f"/admin/issues/{issue.id}/publish", data={"csrf_token": csrf_token(page)}
    )
    assert answer.status_code == 409 and REFUSED in answer.get_data(as_text=True)
    when = (utcnow() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    answer = staff_client.post(
        f"/admin/issues/{issue.id}/schedule", data={"csrf_token": csrf_token(page), "when": when}
    )
    assert answer.status_code == 409 and REFUSED in answer.get_data(as_text=True)
    english = staff_client.post(
        f"/admin/issues/{issue.id}/publish?lang=en", data={"csrf_token": csrf_token(page)}
    )
    assert "No postal address yet" in english.get_data(as_text=True)
    warning = staff_client.get("/admin/identity?lang=zh").get_data(as_text=True)
    assert "还没有填写邮寄地址：正式环境下不能发布" in warning
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == IssueStatus.DRAFT and planned(issue) == 0

    # With the address filled in, the same button publishes.
    set_identity(staff_client, postal_address=ADDRESS)
    answer = staff_client.post(
        f"/admin/issues/{issue.id}/publish", data={"csrf_token": csrf_token(page)}
    )
    assert answer.status_code == 302 and planned(issue) == 2


def test_the_cli_refuses_to_publish_without_a_postal_address(
    app, issue, production_without_address
):
    result = app.test_cli_runner().invoke(args=["publish", str(issue.id)])
    assert result.exit_code == 1
    assert "No postal address yet" in result.output  # the CLI speaks English
    assert planned(issue) == 0


def test_the_sweeper_returns_a_scheduled_issue_to_draft_without_a_postal_address(app, issue):
    publishing.schedule_issue(issue.id, utcnow() + timedelta(minutes=5))
    db.session.commit()
    db.session.execute(
        Issue.__table__.update()
        .where(Issue.id == issue.id)
        .values(scheduled_at=utcnow() - timedelta(seconds=1))
    )
    # Scheduled with an address; then it was cleared, in production.
    site_settings.set_value("postal_address", "")
    db.session.commit()
    saved, app.config["BULLETIN_ENV"] = app.config["BULLETIN_ENV"], "production"
    try:
        result = sweeper.sweep(lambda *_: None)
    finally:
        app.config["BULLETIN_ENV"] = saved
    assert result.published == []
    db.session.expire_all()
    assert db.session.get(Issue, issue.id).status == IssueStatus.DRAFT and planned(issue) == 0
    entry = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "schedule-refused")
    ).one()
    assert REFUSED in entry.detail


def test_outside_production_an_empty_address_does_not_stop_publishing(app, issue):
    site_settings.set_value("postal_address", "")
    db.session.commit()
    assert publishing.publish_issue(issue.id) == 2
