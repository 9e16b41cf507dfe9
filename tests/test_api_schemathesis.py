"""Schemathesis against the API's OpenAPI document, on the real database and Redis.

Each operation gets a bounded number of generated requests (MAX_EXAMPLES), valid and
invalid, with an admin token and with an editor token: no answer may be a 5xx or break
the document (status, media type, schema), a call without the token must be refused
(Schemathesis' `ignored_auth`), and an editor token must never get an admin operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_api import add_readers, make_token

MAX_EXAMPLES = 15
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,
]


@pytest.fixture
def tokens(app):
    """Readers, sections and an issue with its deliveries to find, and two tokens."""
    from tests.documents import sample_markdown
    from webapp.extensions import db
    from webapp.issues import import_document
    from webapp.models import Subscriber, Topic
    from webapp.publishing import publish_issue

    ids = add_readers(app, 3)
    with app.app_context():
        issue, _report = import_document(sample_markdown())
        topics = list(db.session.query(Topic))
        for reader_id in ids:
            db.session.get(Subscriber, reader_id).topics = topics
        db.session.flush()
        publish_issue(issue.id)
        db.session.commit()
    # A lot of calls in little time: this test is not about the rate limit.
    saved = app.config["RATELIMIT_API"]
    app.config["RATELIMIT_API"] = "100000 per minute"
    yield {"admin": make_token(app, "admin"), "editor": make_token(app, "editor")}
    app.config["RATELIMIT_API"] = saved


def test_api_answers_match_its_document(app, tokens):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _exercise(operation, mode, tokens)


def _exercise(operation, mode, tokens) -> None:
    admin_only = operation.definition.raw.get("x-role") == "admin"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {tokens['admin']}"}, checks=CHECKS
        )
        answer = case.call(headers={"Authorization": f"Bearer {tokens['editor']}"})
        assert answer.status_code < 500, (case.method, case.formatted_path)
        if admin_only:
            # Refused (403; or 401, 404 when the generated case is no valid call at all).
            assert not 200 <= answer.status_code < 300, (case.method, case.formatted_path)

    check()
