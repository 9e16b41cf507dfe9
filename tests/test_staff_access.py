"""Every staff page refuses strangers, every admin page refuses editors, every staff form
needs its CSRF token: checked by walking the app's URL map, so a new page cannot be
forgotten."""

from __future__ import annotations

import pytest

from tests.helpers import csrf_token
from webapp.admin.auth import PUBLIC_ENDPOINTS

ADMIN_AREAS = ("/admin/subscribers", "/admin/sections", "/admin/settings")
SAMPLE_VALUES = {"issue_id": 1, "article_id": 1, "topic_id": 1, "status": "failed"}


def staff_routes(app):
    """(url, method, endpoint) for every staff route, with sample values filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        values = {arg: SAMPLE_VALUES.get(arg, 1) for arg in rule.arguments}
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((url, method, rule.endpoint))
    return routes


def test_the_url_map_has_staff_routes_to_check(app):
    endpoints = {endpoint for _, _, endpoint in staff_routes(app)}
    assert {"admin.dashboard", "admin.publish", "admin.subscribers"} <= endpoints


def test_every_staff_endpoint_refuses_an_anonymous_visitor(app, db_session):
    client = app.test_client()
    login = client.get("/admin/login").get_data(as_text=True)
    token = csrf_token(login)  # a valid token, so a POST is refused for who sends it
    for url, method, endpoint in staff_routes(app):
        answer = client.open(url, method=method, data={"csrf_token": token})
        assert answer.status_code == 302, f"{method} {url} ({endpoint})"
        assert "/admin/login" in answer.headers["Location"], f"{method} {url}"


def test_readers_and_sections_are_admin_only(app):
    for url, _, endpoint in staff_routes(app):
        if url.startswith(ADMIN_AREAS):
            assert getattr(app.view_functions[endpoint], "admin_only", False), endpoint


def test_every_admin_only_endpoint_refuses_an_editor(app, editor_client):
    token = csrf_token(editor_client.get("/admin/").get_data(as_text=True))
    checked = 0
    for url, method, endpoint in staff_routes(app):
        if getattr(app.view_functions[endpoint], "admin_only", False):
            answer = editor_client.open(url, method=method, data={"csrf_token": token})
            assert answer.status_code == 403, f"{method} {url} ({endpoint})"
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("who", ["admin", "editor"])
def test_every_staff_form_needs_its_csrf_token(app, request, who):
    client = request.getfixturevalue("staff_client" if who == "admin" else "editor_client")
    for url, method, endpoint in staff_routes(app):
        if method != "POST":
            continue
        if who == "editor" and getattr(app.view_functions[endpoint], "admin_only", False):
            continue
        answer = client.post(url, data={})
        assert answer.status_code in (400, 404), f"POST {url} ({endpoint}): {answer.status_code}"


def sign_in(app, email: str, password: str) -> int:
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    answer = client.post(
        "/admin/login",
        data={"csrf_token": csrf_token(page), "email": email, "password": password},
    )
    return answer.status_code


def test_set_password_gives_a_lost_staff_login_a_new_password(app, db_session):
    from webapp.models import StaffRole
    from webapp.staff import create_staff

    create_staff("lost@example.org", "the forgotten one", StaffRole.ADMIN)
    db_session.commit()

    result = app.test_cli_runner().invoke(args=["set-password", "Lost@example.org"])
    assert result.exit_code == 0, result.output
    new_password = result.output.split("Password (shown once): ")[1].strip()

    assert sign_in(app, "lost@example.org", new_password) == 302
    assert sign_in(app, "lost@example.org", "the forgotten one") == 400  # refused


def test_set_password_names_an_unknown_address_and_a_short_password(app, db_session):
    from webapp.models import StaffRole
    from webapp.staff import create_staff

    unknown = app.test_cli_runner().invoke(args=["set-password", "nobody@example.org"])
    assert unknown.exit_code == 1
    assert "There is no staff account for nobody@example.org." in unknown.output

    create_staff("short@example.org", "long enough password", StaffRole.EDITOR)
    db_session.commit()
    short = app.test_cli_runner().invoke(
        args=["set-password", "short@example.org", "--password", "short"]
    )
    assert short.exit_code == 1
    assert "at least 10 characters" in short.output, short.output
    assert sign_in(app, "short@example.org", "long enough password") == 302
