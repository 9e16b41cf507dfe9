"""A month through the API alone, on a real worker and SMTP server: import the sample
document, set the subject, submit, approve with a second token, publish, watch the
progress to the end and read the deliveries. And the write side's rules one by one."""

from __future__ import annotations

import json

import pytest

from tests.documents import sample_markdown
from tests.helpers import wait_for
from tests.test_api import add_readers, bearer, make_token
from tests.webhook_receiver import receiving, verify


@pytest.fixture
def review_on(app):
    from webapp import site_settings
    from webapp.extensions import db

    with app.app_context():
        site_settings.set_value("review_required", True)
        db.session.commit()


def readers_of_every_topic(app, count: int) -> None:
    from webapp.extensions import db
    from webapp.models import Subscriber, Topic

    ids = add_readers(app, count)
    with app.app_context():
        topics = list(db.session.query(Topic))
        for reader_id in ids:
            db.session.get(Subscriber, reader_id).topics = topics
        db.session.commit()


def upload(client, secret: str):
    import io

    return client.post(
        "/api/v1/issues",
        data={"document": (io.BytesIO(sample_markdown().encode()), "bulletin.md")},
        headers=bearer(secret),
        content_type="multipart/form-data",
    )


def register_webhook(app, url: str, events: list[str]) -> str:
    from webapp import webhooks
    from webapp.extensions import db

    with app.app_context():
        hook = webhooks.register(url, events, created_by="test")
        db.session.commit()
        return hook.secret


def test_a_month_through_the_api_alone(app, celery_worker, inbox, review_on):
    with receiving() as receiver:
        _month(app, inbox, receiver)


def _month(app, inbox, receiver):
    editor, reviewer = make_token(app, "editor", "CMS"), make_token(app, "admin", "主编")
    client = app.test_client()
    secret = register_webhook(app, receiver.url, ["issue.sent", "issue.finished"])

    created = upload(client, editor)
    assert created.status_code == 201, created.get_json()
    issue, report = created.get_json()["issue"], created.get_json()["report"]
    assert report["articles"] == len(issue["articles"]) > 0
    readers_of_every_topic(app, 5)
    url = f"/api/v1/issues/{issue['id']}"

    changed = client.patch(
        url, json={"subject": "八月简报：质量要闻", "number": 8}, headers=bearer(editor)
    )
    assert changed.get_json()["subject"] == "八月简报：质量要闻"
    assert changed.get_json()["number"] == 8

    # Not approved yet: publishing is refused in the pages' words.
    refused = client.post(url + "/publish", headers=bearer(editor))
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "issue-not-approved"
    assert "尚未通过审核" in refused.get_json()["detail"]

    assert client.post(url + "/submit", headers=bearer(editor)).get_json()["review_stage"] == (
        "in_review"
    )
    # An editor token is no reviewer; the submitter never approves their own.
    assert client.post(url + "/approve", headers=bearer(editor)).status_code == 403
    approved = client.post(url + "/approve", headers=bearer(reviewer))
    assert approved.get_json()["review_stage"] == "approved", approved.get_json()

    published = client.post(url + "/publish", headers=bearer(editor))
    assert published.status_code == 200 and published.get_json()["status"] == "sending"

    def progress():
        return client.get(url + "/progress", headers=bearer(editor)).get_json()

    wait_for(lambda: progress()["status"] == "sent", what="the issue to be sent")
    figures = progress()
    assert figures["counts"]["sent"] == figures["total"] == 5 and figures["percent"] == 100
    assert len(inbox.messages) == 5
    assert "八月简报：质量要闻" in inbox.messages[0]["Subject"]

    page = client.get(url + "/deliveries?limit=3", headers=bearer(reviewer)).get_json()
    rest = client.get(
        url + f"/deliveries?after={page['next_after']}", headers=bearer(reviewer)
    ).get_json()
    rows = page["deliveries"] + rest["deliveries"]
    assert {row["status"] for row in rows} == {"sent"} and len(rows) == 5
    assert rest["next_after"] is None

    figures = client.get(url + "/readership", headers=bearer(editor)).get_json()
    assert sum(topic["recipients"] for topic in figures["topics"]) >= 5

    # The receiver heard that the issue went out and that it finished, signed.
    wait_for(lambda: receiver.events("issue.finished"), what="the issue.finished webhook")
    [(headers, body)] = [
        (h, b) for h, b in receiver.received if json.loads(b)["event"] == "issue.finished"
    ]
    assert verify(secret, headers, body)
    assert not verify("whsec_wrong", headers, body)
    finished = json.loads(body)["data"]["issue"]
    assert finished["id"] == issue["id"] and finished["counts"]["sent"] == 5
    assert headers["Bulletin-Event"] == "issue.finished"
    assert [e["data"]["issue"]["recipients"] for e in receiver.events("issue.sent")] == [5]

    from webapp.extensions import db
    from webapp.models import AuditEntry

    with app.app_context():
        trail = [
            (entry.action, entry.staff_email)
            for entry in db.session.query(AuditEntry).order_by(AuditEntry.id)
        ]
    assert ("submit-review", "api-token:CMS (#1)") in trail
    assert ("approve", "api-token:主编 (#2)") in trail
    assert ("publish", "api-token:CMS (#1)") in trail


def test_read_only_tokens_change_nothing(app):
    secret = make_token(app, "read-only")
    client = app.test_client()
    assert upload(client, secret).status_code == 403
    answer = client.post("/api/v1/issues/1/publish", headers=bearer(secret))
    assert answer.status_code == 403


def test_a_refused_document_is_a_problem_with_the_importers_words(app):
    import io

    secret = make_token(app, "editor")
    answer = app.test_client().post(
        "/api/v1/issues",
        data={"document": (io.BytesIO(b"{\\rtf1 hello}"), "old.rtf")},
        headers=bearer(secret),
        content_type="multipart/form-data",
    )
    assert answer.status_code == 422
    assert answer.get_json()["code"] == "document-rtf"


def test_subscribers_through_the_api(app, celery_worker, inbox):
    from webapp.issues import ensure_topics

    with app.app_context():
        from webapp.extensions import db

        topic_ids = [t.id for t in ensure_topics(["质量要闻", "国际动态"])]
        db.session.commit()
    secret = make_token(app, "admin")
    client = app.test_client()

    # Double opt-in: pending, and the confirmation email goes after the commit.
    made = client.post(
        "/api/v1/subscribers",
        json={"email": "New@Example.org", "topics": topic_ids[:1]},
        headers=bearer(secret),
    )
    assert made.status_code == 201
    reader = made.get_json()["subscriber"]
    assert reader["status"] == "pending" and made.get_json()["confirmation_queued"]
    wait_for(lambda: inbox.to("new@example.org"), what="the confirmation email")

    # Consented, with evidence: active at once, no email.
    vouched = client.post(
        "/api/v1/subscribers",
        json={
            "email": "met@example.org",
            "topics": topic_ids,
            "consent": "consented",
            "evidence": "signed the paper form at the 2026 conference",
        },
        headers=bearer(secret),
    ).get_json()["subscriber"]
    assert vouched["status"] == "active"
    assert vouched["consent"]["method"] == "imported-consented"
    assert "paper form" in vouched["consent"]["source"]

    changed = client.patch(
        f"/api/v1/subscribers/{vouched['id']}",
        json={"topics": topic_ids[1:], "locale": "en"},
        headers=bearer(secret),
    ).get_json()
    assert changed["topics"] == topic_ids[1:] and changed["locale"] == "en"

    left = client.post(f"/api/v1/subscribers/{vouched['id']}/unsubscribe", headers=bearer(secret))
    assert left.get_json()["status"] == "unsubscribed"
    # Staff cannot bring back a reader who left: only the reader can.
    back = client.patch(
        f"/api/v1/subscribers/{vouched['id']}", json={"topics": topic_ids}, headers=bearer(secret)
    )
    assert back.status_code == 409 and back.get_json()["code"] == "subscriber-left"

    exported = client.get(f"/api/v1/subscribers/{vouched['id']}/export", headers=bearer(secret))
    assert [e["kind"] for e in exported.get_json()["events"]][0] == "imported"

    assert (
        client.delete(f"/api/v1/subscribers/{vouched['id']}", headers=bearer(secret)).status_code
        == 204
    )
    assert (
        client.get(f"/api/v1/subscribers/{vouched['id']}", headers=bearer(secret)).status_code
        == 404
    )
    # Erased means suppressed: signing the address up again stores nothing.
    again = client.post(
        "/api/v1/subscribers",
        json={"email": "met@example.org", "topics": topic_ids},
        headers=bearer(secret),
    ).get_json()
    assert again == {"subscriber": None, "confirmation_queued": False}

    bad = client.post(
        "/api/v1/subscribers",
        json={"email": "not an address", "topics": topic_ids},
        headers=bearer(secret, **{"Accept-Language": "en"}),
    )
    assert bad.status_code == 422 and bad.get_json()["code"] == "email-invalid"
    wrong_type = client.post("/api/v1/subscribers", data="x", headers=bearer(secret))
    assert wrong_type.status_code == 415


def test_webhooks_are_retried_with_backoff_and_logged(app, celery_worker):
    """A receiver that fails twice gets the event a third time; the log shows each answer.
    The request that caused the event did not wait for any of it."""
    from webapp.extensions import db
    from webapp.models import WebhookDelivery, WebhookDeliveryStatus

    topic = _topic(app)
    secret = make_token(app, "admin")
    client = app.test_client()
    saved = app.config["WEBHOOK_RETRY_SECONDS"]
    app.config["WEBHOOK_RETRY_SECONDS"] = 0.2
    try:
        with receiving() as receiver:
            hook_secret = register_webhook(app, receiver.url, ["subscriber.unsubscribed"])
            receiver.answers = [500, 503]
            reader = client.post(
                "/api/v1/subscribers",
                json={"email": "a@example.org", "topics": [topic], "consent": "consented",
                      "evidence": "paper form"},
                headers=bearer(secret),
            ).get_json()["subscriber"]  # fmt: skip
            client.post(f"/api/v1/subscribers/{reader['id']}/unsubscribe", headers=bearer(secret))

            def delivered():
                with app.app_context():
                    row = db.session.query(WebhookDelivery).one()
                    return row if row.status == WebhookDeliveryStatus.DELIVERED else None

            row = wait_for(delivered, what="the third attempt")
            assert row.attempts == 3 and row.response_status == 200
            assert len(receiver.received) == 3
            headers, body = receiver.received[-1]
            assert verify(hook_secret, headers, body)
            event = json.loads(body)
            assert event["data"]["subscriber"]["email"] == "a@example.org"
            assert event["id"] == row.id
    finally:
        app.config["WEBHOOK_RETRY_SECONDS"] = saved


def test_a_rolled_back_change_tells_no_webhook(app, db_session):
    from webapp import subscriptions, webhooks
    from webapp.extensions import db
    from webapp.models import Subscriber, SubscriberStatus, WebhookDelivery
    from webapp.transactions import transaction

    webhooks.register("http://127.0.0.1:9/", ["subscriber.unsubscribed"], created_by="t")
    reader = Subscriber(email="b@example.org", status=SubscriberStatus.ACTIVE)
    db.session.add(reader)
    db.session.commit()
    with pytest.raises(RuntimeError):
        with transaction():
            subscriptions.unsubscribe(reader.id)
            raise RuntimeError("something else failed")
    assert db.session.query(WebhookDelivery).count() == 0


def _topic(app) -> int:
    from webapp.extensions import db
    from webapp.issues import ensure_topics

    with app.app_context():
        [topic] = ensure_topics(["质量要闻"])
        db.session.commit()
        return topic.id


def test_admins_register_webhooks_on_the_staff_site(app, staff_client, editor_client):
    from tests.helpers import csrf_token

    page = staff_client.get("/admin/api").get_data(as_text=True)
    made = staff_client.post(
        "/admin/api/webhooks",
        data={
            "csrf_token": csrf_token(page),
            "url": "https://crm.example.org/bulletin",
            "events": ["subscriber.confirmed", "issue.finished"],
        },
    ).get_data(as_text=True)
    assert "whsec_" in made and "Bulletin-Signature" in made
    again = staff_client.get("/admin/api").get_data(as_text=True)
    assert "whsec_" not in again and "https://crm.example.org/bulletin" in again
    refused = staff_client.post(
        "/admin/api/webhooks",
        data={"csrf_token": csrf_token(page), "url": "ftp://x", "events": ["issue.sent"]},
    )
    assert refused.status_code == 400
    assert editor_client.post("/admin/api/webhooks", data={}).status_code in (400, 403)


def test_production_refuses_webhooks_into_its_own_network(app, db_session):
    """An admin account must not turn the server into a client of its own network: in
    production a loopback or private receiver is refused when registered, and a delivery
    to one (a name that pointed outward when registered) is refused without a connection."""
    from webapp import webhooks
    from webapp.errors import describe
    from webapp.models import Webhook, WebhookDelivery

    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    try:
        for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook"):
            with pytest.raises(webhooks.WebhookError) as refused:
                webhooks.register(url, ["issue.sent"], created_by="t")
            assert refused.value.field == "url"
            with app.test_request_context("/?lang=zh"):
                assert "内网地址" in describe(refused.value)
        hook = Webhook(
            url="http://127.0.0.1:9/hook", events="issue.sent", secret="whsec_x", created_by="t"
        )
        db_session.add(hook)
        db_session.flush()
        row = WebhookDelivery(webhook_id=hook.id, event="issue.sent", payload="{}")
        db_session.add(row)
        db_session.commit()
        outcome = webhooks.post(row.id)
        assert not outcome.delivered and outcome.status is None
        assert "not public" in outcome.answer
    finally:
        app.config["WEBHOOK_ALLOW_PRIVATE"] = True


def webhook_schema(document: dict, event: str) -> dict:
    """The body schema the API document gives for `event`, its references filled in."""
    schemas = document["components"]["schemas"]

    def fill(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return fill(schemas[node["$ref"].rsplit("/", 1)[1]])
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(value) for value in node]
        return node

    post = document["webhooks"][event]["post"]
    return fill(post["requestBody"]["content"]["application/json"]["schema"])


def test_every_webhook_body_is_the_one_the_api_document_describes(app, db_session):
    import jsonschema_rs
    from sqlalchemy import update

    from webapp import publishing, subscriptions, webhooks
    from webapp.extensions import db
    from webapp.issues import add_article, create_issue, ensure_topics
    from webapp.models import (
        Delivery,
        DeliveryStatus,
        EventSource,
        Subscriber,
        SubscriberStatus,
        SuppressionReason,
        WebhookDelivery,
    )

    document = app.test_client().get("/api/v1/openapi.json").get_json()
    assert set(document["webhooks"]) == set(webhooks.EVENTS)
    webhooks.register("http://127.0.0.1:9/", list(webhooks.EVENTS), created_by="t")
    [topic] = ensure_topics(["质量要闻"])
    readers = [
        Subscriber(email=f"{name}@example.org", status=SubscriberStatus.PENDING, topics=[topic])
        for name in ("reader", "bounces", "complains")
    ]
    db.session.add_all(readers)
    issue = create_issue("第八期")
    add_article(issue, topic, "文章", "正文。")
    db.session.commit()
    for reader in readers:
        subscriptions.confirm(reader.id)
    subscriptions.unsubscribe(readers[0].id)
    subscriptions.suppress(
        readers[1].email, SuppressionReason.HARD_BOUNCE, source=EventSource.BOUNCE
    )
    subscriptions.suppress(readers[2].email, SuppressionReason.COMPLAINT, source=EventSource.BOUNCE)
    db.session.commit()
    readers.append(
        Subscriber(email="gets@example.org", status=SubscriberStatus.ACTIVE, topics=[topic])
    )
    db.session.add(readers[-1])
    db.session.commit()
    publishing.publish_issue(issue.id)
    publishing.pause_issue(issue.id, "查看退信")
    publishing.resume_issue(issue.id)
    db.session.execute(update(Delivery).values(status=DeliveryStatus.SENT))
    assert publishing.finish_if_done(issue.id)
    db.session.commit()

    bodies = [(row.event, json.loads(row.payload)) for row in db.session.query(WebhookDelivery)]
    assert {event for event, _ in bodies} == set(webhooks.EVENTS)
    for event, body in bodies:
        validator = jsonschema_rs.validator_for(webhook_schema(document, event))
        assert validator.is_valid(body), (event, body, list(validator.iter_errors(body)))
