"""Site settings: defaults from the configuration, values staff store on /admin/settings."""

from __future__ import annotations

import pytest

from tests.helpers import csrf_token
from webapp import site_settings
from webapp.models import AuditEntry, Setting


def test_a_setting_without_a_row_takes_its_default_from_the_configuration(app, db_session):
    assert site_settings.get_value("counted_links") is True
    app.config["COUNTED_LINKS"] = False
    try:
        assert site_settings.get_value("counted_links") is False
    finally:
        app.config["COUNTED_LINKS"] = True


def test_a_stored_value_wins_over_the_default_and_is_cached_until_changed(db_session):
    site_settings.set_value("counted_links", False, actor="a@example.org")
    db_session.commit()
    assert site_settings.get_value("counted_links") is False
    assert site_settings.cached_value("counted_links") is False
    site_settings.set_value("counted_links", True)
    db_session.commit()
    # Changing a setting forgets this process's cached values at once.
    assert site_settings.cached_value("counted_links") is True
    assert db_session.get(Setting, "counted_links").value == "true"


def test_unknown_settings_and_wrong_kinds_are_refused(db_session):
    with pytest.raises(site_settings.UnknownSetting):
        site_settings.get_value("no_such_setting")
    with pytest.raises(site_settings.UnknownSetting):
        site_settings.set_value("counted_links", "yes")


def test_an_admin_turns_counted_links_off_on_the_settings_page(app, staff_client, db_session):
    page = staff_client.get("/admin/settings")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="counted_links"' in html and "checked" in html
    answer = staff_client.post(
        "/admin/settings", data={"csrf_token": csrf_token(html)}, follow_redirects=True
    )
    assert answer.status_code == 200
    assert "设置已保存" in answer.get_data(as_text=True)
    assert site_settings.get_value("counted_links") is False
    entry = db_session.query(AuditEntry).filter_by(action="settings").one()
    assert entry.staff_email == "admin@example.org" and "counted_links=False" in entry.detail
    assert db_session.get(Setting, "counted_links").updated_by == "admin@example.org"


def test_the_settings_page_is_in_english_too(staff_client):
    html = staff_client.get("/admin/settings?lang=en").get_data(as_text=True)
    assert "Settings" in html


def test_editors_cannot_change_settings(editor_client):
    assert editor_client.get("/admin/settings").status_code == 403
