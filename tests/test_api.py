"""The JSON API: tokens, the rules of the staff pages, problem details, keyset pages, and
the OpenAPI document that describes it all."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.helpers import csrf_token


def make_token(app, role: str, name: str = "CMS") -> str:
    from webapp import api_tokens
    from webapp.extensions import db
    from webapp.models import ApiTokenRole

    with app.app_context():
        _token, secret = api_tokens.create_token(name, ApiTokenRole(role), created_by="test")
        db.session.commit()
    return secret


def bearer(secret: str, **headers) -> dict:
    return {"Authorization": f"Bearer {secret}", **headers}


def add_readers(app, count: int) -> list[int]:
    from webapp.extensions import db
    from webapp.models import Subscriber, SubscriberStatus

    with app.app_context():
        readers = [
            Subscriber(email=f"reader{n}@example.org", status=SubscriberStatus.ACTIVE)
            for n in range(count)
        ]
        db.session.add_all(readers)
        db.session.commit()
        return [reader.id for reader in readers]


def test_openapi_document_names_every_route_of_the_api(app):
    client = app.test_client()
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint not in (
            "api.openapi_document",
            "api.reference",
        ):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
            routes.setdefault(path, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    documented = {path: {m.upper() for m in ops} for path, ops in document["paths"].items()}
    assert documented == routes
    # Each operation states the role the view enforces.
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            view = app.view_functions[_endpoint(app, path, method)]
            assert op["x-role"] == getattr(view, "api_role", "read-only"), (method, path)


def _endpoint(app, path: str, method: str) -> str:
    adapter = app.url_map.bind("localhost")
    sample = re.sub(r"\{\w+\}", "1", path)
    endpoint, _args = adapter.match("/api/v1" + sample, method=method.upper())
    return endpoint


def test_reference_page_lists_the_operations_without_a_token(app):
    page = app.test_client().get("/api/v1/").get_data(as_text=True)
    assert "GET /api/v1/issues/{issue_id}/deliveries" in page
    assert "<script" not in page


def test_a_call_without_a_token_is_refused_as_problem_details(app):
    answer = app.test_client().get("/api/v1/issues", headers={"Accept-Language": "en"})
    assert answer.status_code == 401
    assert answer.mimetype == "application/problem+json"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    problem = answer.get_json()
    assert problem["status"] == 401 and problem["code"] == "api-token-invalid"
    assert "Authorization: Bearer" in problem["detail"]


def test_a_signed_in_staff_session_is_no_credential_for_the_api(staff_client):
    # The API is exempt from CSRF because only the header counts, never the cookie.
    assert staff_client.get("/api/v1/issues").status_code == 401
    assert staff_client.post("/api/v1/issues").status_code in (401, 405)


def test_token_is_shown_once_stored_hashed_and_revocable(app, staff_client):
    from webapp.extensions import db
    from webapp.models import ApiToken, AuditEntry

    page = staff_client.get("/admin/api").get_data(as_text=True)
    answer = staff_client.post(
        "/admin/api/tokens",
        data={"csrf_token": csrf_token(page), "name": "官网 CMS", "role": "read-only"},
    )
    assert answer.status_code == 200
    secret = re.search(r'<code class="secret">(blt_[^<]+)</code>', answer.get_data(as_text=True))
    secret = secret.group(1)
    # Shown once: the list shows its first characters only.
    again = staff_client.get("/admin/api").get_data(as_text=True)
    assert secret not in again and secret[:10] in again

    with app.app_context():
        token = db.session.query(ApiToken).one()
        assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert token.last_used_at is None

    api = app.test_client()
    assert api.get("/api/v1/topics", headers=bearer(secret)).status_code == 200
    with app.app_context():
        token = db.session.query(ApiToken).one()
        assert token.last_used_at is not None
    assert "最近使用" in staff_client.get("/admin/api").get_data(as_text=True)

    # Revoking asks first, then the token stops working at once.
    page = staff_client.get("/admin/api").get_data(as_text=True)
    first = staff_client.post(
        f"/admin/api/tokens/{token.id}/revoke", data={"csrf_token": csrf_token(page)}
    )
    assert "确认撤销" in first.get_data(as_text=True)
    assert api.get("/api/v1/topics", headers=bearer(secret)).status_code == 200
    staff_client.post(
        f"/admin/api/tokens/{token.id}/revoke",
        data={"csrf_token": csrf_token(page), "confirm": "yes"},
    )
    assert api.get("/api/v1/topics", headers=bearer(secret)).status_code == 401
    with app.app_context():
        actions = [entry.action for entry in db.session.query(AuditEntry)]
        assert {"api-token-create", "api-token-revoke"} <= set(actions)


def test_editors_cannot_make_tokens(editor_client):
    assert editor_client.get("/admin/api").status_code == 403


@pytest.mark.parametrize("role", ["read-only", "editor"])
def test_only_admin_tokens_read_addresses(app, role):
    [reader] = add_readers(app, 1)
    secret = make_token(app, role)
    client = app.test_client()
    for url in (
        "/api/v1/subscribers",
        f"/api/v1/subscribers/{reader}",
        f"/api/v1/subscribers/{reader}/export",
        "/api/v1/issues/1/deliveries",
    ):
        answer = client.get(url, headers=bearer(secret, **{"Accept-Language": "en"}))
        assert answer.status_code == 403, url
        assert answer.mimetype == "application/problem+json"
        assert answer.get_json()["code"] == "api-forbidden"
        assert "reader0@example.org" not in answer.get_data(as_text=True)


def test_problems_carry_the_pages_words_in_the_callers_language(app):
    secret = make_token(app, "admin")
    client = app.test_client()
    zh = client.get("/api/v1/issues/99", headers=bearer(secret)).get_json()
    en = client.get("/api/v1/issues/99", headers=bearer(secret, **{"Accept-Language": "en"}))
    assert zh["detail"] == "第 99 期不存在。"
    assert en.status_code == 404 and en.get_json()["code"] == "issue-missing"
    assert "99" in en.get_json()["detail"] and "期" not in en.get_json()["detail"]
    # An unknown address under the API is a problem too, not an HTML page.
    missing = client.get("/api/v1/nothing", headers=bearer(secret))
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    bad = client.get("/api/v1/issues?limit=0", headers=bearer(secret)).get_json()
    assert bad["status"] == 422 and bad["code"] == "api-invalid"


def test_subscribers_come_in_keyset_pages(app):
    ids = add_readers(app, 7)
    secret = make_token(app, "admin")
    client = app.test_client()
    seen, after = [], None
    while True:
        url = "/api/v1/subscribers?limit=3" + (f"&after={after}" if after else "")
        page = client.get(url, headers=bearer(secret)).get_json()
        seen += [row["id"] for row in page["subscribers"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(ids, reverse=True)
    one = client.get(f"/api/v1/subscribers/{ids[0]}", headers=bearer(secret)).get_json()
    assert one["email"] == "reader0@example.org"


def test_each_token_has_its_own_rate_limit(app):
    first, second = make_token(app, "read-only", "a"), make_token(app, "read-only", "b")
    client = app.test_client()
    saved = app.config["RATELIMIT_API"]
    app.config["RATELIMIT_API"] = "3 per minute"
    try:
        answers = [client.get("/api/v1/topics", headers=bearer(first)) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[-1].mimetype == "application/problem+json"
        assert client.get("/api/v1/topics", headers=bearer(second)).status_code == 200
    finally:
        app.config["RATELIMIT_API"] = saved


def test_nul_characters_are_refused_not_a_server_error(app):
    secret = make_token(app, "admin")
    client = app.test_client()
    assert client.get("/api/v1/subscribers?q=a%00b", headers=bearer(secret)).status_code == 200
    answer = client.post(
        "/api/v1/subscribers",
        json={"email": "a@example.org", "name": "x\x00y", "topics": [1]},
        headers=bearer(secret),
    )
    assert answer.status_code == 422 and answer.get_json()["code"] == "api-invalid"
