"""The OpenAPI 3.1 document of the API, kept beside the views it describes.

`tests/test_api.py` checks that it names every route of the blueprint with its methods,
and Schemathesis checks the answers against it. Each operation says the token role it
needs; `reference.html` renders the same document as the readable page.
"""

from __future__ import annotations

from flask import current_app, jsonify, render_template

from .. import webhooks
from . import bp

PROBLEM = "application/problem+json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **more) -> dict:
    return {"type": [kind, "null"], **more}


MOMENT = _nullable("string", format="date-time")
ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}

SCHEMAS: dict = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `title` and `detail` in the request's "
        "language (Accept-Language, or ?lang=zh|en), `code` the error code when there is one.",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "field": {"type": "string"},
        },
    },
    "Topic": {
        "type": "object",
        "required": ["id", "name", "slug", "position", "active"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "slug": {"type": "string"},
            "position": {"type": "integer"},
            "active": {"type": "boolean"},
        },
    },
    "Subscriber": {
        "type": "object",
        "required": ["id", "email", "name", "status", "locale", "topics", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string"},
            "name": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["pending", "active", "unsubscribed", "bounced", "complained"],
            },
            "locale": {"type": "string"},
            "topics": {"type": "array", "items": {"type": "integer"}},
            "created_at": {"type": "string", "format": "date-time"},
            "confirmed_at": MOMENT,
            "unsubscribed_at": MOMENT,
            "consent": {
                "type": "object",
                "properties": {
                    "method": _nullable("string"),
                    "consented_at": MOMENT,
                    "source": _nullable("string"),
                },
            },
        },
    },
    "SubscriberPage": {
        "type": "object",
        "required": ["subscribers", "next_after"],
        "properties": {
            "subscribers": {"type": "array", "items": _ref("Subscriber")},
            "next_after": _nullable("integer", description="pass as `after` for the next page"),
        },
    },
    "SubscriberExport": {
        "type": "object",
        "description": "Everything stored about one reader (their right of access).",
        "required": ["email", "status", "events", "deliveries"],
        "properties": {
            "email": {"type": "string"},
            "status": {"type": "string"},
            "events": {"type": "array", "items": {"type": "object"}},
            "deliveries": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Issue": {
        "type": "object",
        "required": ["id", "title", "subject", "status", "review_stage", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "period": {"type": "string"},
            "subject": {"type": "string", "description": "the subject line readers will see"},
            "subject_override": {
                "type": "string",
                "description": "the issue's own subject; empty: from the subject pattern",
            },
            "preheader": {"type": "string"},
            "year": _nullable("integer"),
            "number": _nullable("integer"),
            "total_number": _nullable("integer"),
            "number_label": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["draft", "scheduled", "sending", "paused", "sent", "cancelled"],
            },
            "review_stage": {
                "type": "string",
                "enum": ["draft", "in_review", "returned", "approved"],
            },
            "submitted_by": {"type": "string"},
            "reviewed_by": {"type": "string"},
            "review_comment": {"type": "string"},
            "pause_reason": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": MOMENT,
            "scheduled_at": MOMENT,
            "published_at": MOMENT,
            "sent_at": MOMENT,
            "articles": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "topic_id", "title"],
                    "properties": {
                        "id": {"type": "integer"},
                        "topic_id": {"type": "integer"},
                        "position": {"type": "integer"},
                        "title": {"type": "string"},
                        "source_name": {"type": "string"},
                        "source_url": {"type": "string"},
                    },
                },
            },
        },
    },
    "IssuePage": {
        "type": "object",
        "required": ["issues", "next_after"],
        "properties": {
            "issues": {"type": "array", "items": _ref("Issue")},
            "next_after": _nullable("integer"),
        },
    },
    "Progress": {
        "type": "object",
        "required": ["status", "counts", "total", "done", "percent"],
        "properties": {
            "status": {"type": "string"},
            "pause_reason": {"type": "string"},
            "counts": {
                "type": "object",
                "description": "deliveries by status",
                "additionalProperties": {"type": "integer"},
            },
            "total": {"type": "integer"},
            "done": {"type": "integer"},
            "percent": {"type": "integer"},
            "rate": {"type": "number", "description": "messages per second, lately"},
            "seconds_left": _nullable("integer"),
        },
    },
    "SubscriberCreate": {
        "type": "object",
        "required": ["email", "topics"],
        "properties": {
            "email": {"type": "string", "maxLength": 320},
            "name": {"type": "string", "maxLength": 100},
            "topics": {"type": "array", "maxItems": 1000, "items": ID},
            "locale": {"type": "string", "enum": ["zh", "en"]},
            "consent": {
                "type": "string",
                "enum": ["double-opt-in", "consented"],
                "default": "double-opt-in",
                "description": "double-opt-in: a pending reader, emailed a confirmation link; "
                "consented: active at once, `evidence` saying how they agreed",
            },
            "evidence": {"type": "string", "maxLength": 150},
        },
    },
    "SubscriberCreated": {
        "type": "object",
        "required": ["subscriber", "confirmation_queued"],
        "properties": {
            "subscriber": {
                "oneOf": [_ref("Subscriber"), {"type": "null"}],
                "description": "null for a suppressed address: nothing was stored",
            },
            "confirmation_queued": {"type": "boolean"},
        },
    },
    "SubscriberUpdate": {
        "type": "object",
        "description": "What is left out stays; a reader who left is not brought back (409).",
        "properties": {
            "topics": {"type": "array", "maxItems": 1000, "items": ID},
            "locale": {"type": "string", "enum": ["zh", "en"]},
            "name": {"type": "string", "maxLength": 100},
        },
    },
    "IssueUpdate": {
        "type": "object",
        "description": "What is left out stays; an empty subject follows the subject pattern.",
        "properties": {
            **{
                name: {"type": "string", "maxLength": 1000}
                for name in ("title", "period", "subject", "preheader")
            },
            **{
                name: {"type": ["integer", "null"], "minimum": 1, "maximum": 99999}
                for name in ("year", "number", "total_number")
            },
        },
    },
    "IssueCreated": {
        "type": "object",
        "required": ["issue", "report"],
        "properties": {
            "issue": _ref("Issue"),
            "report": {
                "type": "object",
                "description": "the importer's report: what it found, repaired, dropped",
                "properties": {
                    "format": {"type": "string"},
                    "title": {"type": "string"},
                    "period": _nullable("string"),
                    "sections": {"type": "array", "items": {"type": "string"}},
                    "articles": {"type": "integer"},
                    "pages": _nullable("integer"),
                    "repaired": {"type": "array", "items": {"type": "string"}},
                    "dropped": {"type": "array", "items": {"type": "string"}},
                    "warnings": {"type": "array", "items": {"type": "string"}},
                    "images": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
    "Readership": {
        "type": "object",
        "description": "Aggregate counts of counted links and page views; nothing about who.",
        "required": ["issue_id", "counted", "filtered", "topics"],
        "properties": {
            "issue_id": {"type": "integer"},
            "counted": {"type": "integer"},
            "filtered": {"type": "integer", "description": "left out as scanners"},
            "issue_page_views": {"type": "integer"},
            "left_altogether": {"type": "integer"},
            "window_start": MOMENT,
            "window_end": MOMENT,
            "recipients_recorded": {"type": "boolean"},
            "topics": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["topic_id", "name", "recipients", "clicks"],
                    "properties": {
                        "topic_id": {"type": "integer"},
                        "name": {"type": "string"},
                        "recipients": {"type": "integer"},
                        "unsubscribes": {"type": "integer"},
                        "clicks": {"type": "integer"},
                        "clicks_per_thousand": _nullable("number"),
                        "articles": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    },
    "DeliveryPage": {
        "type": "object",
        "required": ["deliveries", "next_after"],
        "properties": {
            "deliveries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "email", "status", "attempts"],
                    "properties": {
                        "id": {"type": "integer"},
                        "email": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["pending", "sending", "sent", "failed", "unknown", "skipped"],
                        },
                        "attempts": {"type": "integer"},
                        "smtp_reply": {"type": "string"},
                        "updated_at": MOMENT,
                        "sent_at": MOMENT,
                    },
                },
            },
            "next_after": _nullable("integer"),
        },
    },
}


def _problems(*statuses: int) -> dict:
    words = {
        401: "no token, or a revoked or unknown one",
        403: "the token's role may not do this",
        404: "no such resource",
        405: "no such operation: Werkzeug's answer to an id no row can have, in some methods",
        409: "the resource's state does not allow this now",
        413: "the body is too large",
        415: "the body is not of the documented media type",
        422: "the request's values are refused",
        429: "the token's rate limit was reached",
    }
    return {
        str(status): {
            "description": words[status],
            "content": {PROBLEM: {"schema": _ref("Problem")}},
        }
        for status in statuses
    }


def _ok(schema: dict, status: int = 200, description: str = "done") -> dict:
    return {
        str(status): {
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _param(name: str, where: str, schema: dict, description: str = "", required=False) -> dict:
    param = {"name": name, "in": where, "schema": schema, "required": required or where == "path"}
    if description:
        param["description"] = description
    return param


ISSUE_ID = _param("issue_id", "path", ID)
SUBSCRIBER_ID = _param("subscriber_id", "path", ID)
AFTER = _param("after", "query", ID, "the previous page's `next_after`")
LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500})


def operation(op_id, summary, role, responses, *, params=(), body=None, codes=()) -> dict:
    """One operation: what it needs (`role`), answers (`responses`) and refusals."""
    statuses = {401, 403, 429, *codes}
    if params:
        statuses.add(422)
    if any(param["in"] == "path" for param in params):
        statuses.update({404, 405})
    if body is not None:
        statuses.update({413, 415, 422})
    described = {**responses, **_problems(*sorted(statuses))}
    op = {
        "operationId": op_id,
        "summary": summary,
        "description": f"Token role: **{role}** or above.",
        "x-role": role,
        "parameters": list(params),
        "responses": described,
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


PATHS: dict = {
    "/topics": {
        "get": operation(
            "listTopics", "The sections, in their order", "read-only",
            _ok({"type": "object", "required": ["topics"],
                 "properties": {"topics": {"type": "array", "items": _ref("Topic")}}}),
        ),
    },
    "/subscribers": {
        "post": operation(
            "createSubscriber", "Sign a reader up: double opt-in, or consented with evidence",
            "admin", _ok(_ref("SubscriberCreated"), 201, "recorded"),
            body=_json(_ref("SubscriberCreate")), codes=[409],
        ),
        "get": operation(
            "listSubscribers", "Readers, newest first, by keyset pages", "admin",
            _ok(_ref("SubscriberPage")),
            params=[
                _param("status", "query", SCHEMAS["Subscriber"]["properties"]["status"]),
                _param("topic", "query", ID, "readers who chose this section"),
                _param("q", "query", {"type": "string", "maxLength": 320}, "part of the address"),
                AFTER, LIMIT,
            ],
        ),
    },
    "/subscribers/{subscriber_id}": {
        "get": operation(
            "getSubscriber", "One reader", "admin", _ok(_ref("Subscriber")),
            params=[SUBSCRIBER_ID], codes=[404],
        ),
        "patch": operation(
            "updateSubscriber", "Change a reader's sections, language or name", "admin",
            _ok(_ref("Subscriber")), params=[SUBSCRIBER_ID],
            body=_json(_ref("SubscriberUpdate")), codes=[404, 409],
        ),
        "delete": operation(
            "eraseSubscriber", "Erase a reader: only a hash of the address stays", "admin",
            {"204": {"description": "erased"}}, params=[SUBSCRIBER_ID], codes=[404],
        ),
    },
    "/subscribers/{subscriber_id}/unsubscribe": {
        "post": operation(
            "unsubscribeSubscriber", "Unsubscribe a reader from everything", "admin",
            _ok(_ref("Subscriber")), params=[SUBSCRIBER_ID], codes=[404],
        ),
    },
    "/subscribers/{subscriber_id}/export": {
        "get": operation(
            "exportSubscriber", "Everything stored about one reader", "admin",
            _ok(_ref("SubscriberExport")), params=[SUBSCRIBER_ID], codes=[404],
        ),
    },
    "/issues": {
        "get": operation(
            "listIssues", "Issues, newest first, by keyset pages", "read-only",
            _ok(_ref("IssuePage")),
            params=[
                _param("status", "query", SCHEMAS["Issue"]["properties"]["status"]),
                AFTER, LIMIT,
            ],
        ),
        "post": operation(
            "createIssue", "A new draft from a bulletin document, with the import report",
            "editor", _ok(_ref("IssueCreated"), 201, "created"),
            body={"multipart/form-data": {"schema": {
                "type": "object", "required": ["document"],
                "properties": {"document": {
                    "type": "string", "format": "binary",
                    "description": "Markdown, plain text, .docx or PDF",
                }},
            }}},
        ),
    },
    "/issues/{issue_id}": {
        "get": operation(
            "getIssue", "One issue with its articles", "read-only", _ok(_ref("Issue")),
            params=[ISSUE_ID], codes=[404],
        ),
        "patch": operation(
            "updateIssue", "Change the title, period, subject, preheader or number", "editor",
            _ok(_ref("Issue")), params=[ISSUE_ID], body=_json(_ref("IssueUpdate")),
            codes=[404, 409],
        ),
    },
    **{
        f"/issues/{{issue_id}}/{action}": {
            "post": operation(
                f"{action}Issue", summary, "editor", _ok(_ref("Issue")),
                params=[ISSUE_ID], codes=[404, 409], body=body,
            ),
        }
        for action, summary, body in (
            ("submit", "Submit for review (送审); reviewers are emailed", None),
            ("approve", "Approve (审核通过): a reviewer, not the submitter", None),
            ("return", "Return for changes (退回修改) with a comment",
             _json({"type": "object", "required": ["comment"],
                    "properties": {"comment": {"type": "string", "maxLength": 1000}}})),
            ("publish", "Start sending now; refused (409) unless approved while review is on",
             None),
            ("schedule", "Publish automatically at a time",
             _json({"type": "object", "required": ["at"],
                    "properties": {"at": {"type": "string", "format": "date-time"}}})),
            ("unschedule", "Take back a scheduled publication", None),
            ("pause", "Pause sending", None),
            ("resume", "Resume a paused send", None),
            ("cancel", "Cancel for good: readers not yet sent to are skipped", None),
        )
    },
    "/issues/{issue_id}/progress": {
        "get": operation(
            "getProgress", "How far sending has got", "read-only", _ok(_ref("Progress")),
            params=[ISSUE_ID], codes=[404],
        ),
    },
    "/issues/{issue_id}/readership": {
        "get": operation(
            "getReadership", "Readership figures: clicks and page views per section", "read-only",
            _ok(_ref("Readership")), params=[ISSUE_ID], codes=[404],
        ),
    },
    "/issues/{issue_id}/deliveries": {
        "get": operation(
            "listDeliveries", "The per-recipient log, by keyset pages", "admin",
            _ok(_ref("DeliveryPage")),
            params=[
                ISSUE_ID,
                _param("status", "query",
                       SCHEMAS["DeliveryPage"]["properties"]["deliveries"]["items"]
                       ["properties"]["status"]),
                _param("q", "query", {"type": "string", "maxLength": 320}, "part of the address"),
                AFTER, LIMIT,
            ],
            codes=[404],
        ),
    },
}  # fmt: skip


# What the receivers of webhooks (webhooks.py) get: one POST per event, the same envelope
# around each event's `data`. In the document as OpenAPI 3.1 `webhooks`, so a receiver's
# code can be generated and checked like a caller's.
WEBHOOK_SCHEMAS: dict = {
    "WebhookSubscriberData": {
        "type": "object",
        "required": ["subscriber"],
        "properties": {
            "subscriber": {
                "type": "object",
                "required": ["id", "email", "status", "topics"],
                "properties": {
                    "id": {"type": "integer"},
                    "email": {"type": "string"},
                    "status": {"type": "string"},
                    "topics": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "description": "the ids of the sections they get",
                    },
                },
            }
        },
    },
    "WebhookIssueData": {
        "type": "object",
        "required": ["issue"],
        "properties": {
            "issue": {
                "type": "object",
                "required": ["id", "title", "status"],
                "properties": {
                    "id": {"type": "integer"},
                    "title": {"type": "string"},
                    "status": {"type": "string"},
                    "recipients": {
                        "type": "integer",
                        "description": "issue.sent: the readers it goes to",
                    },
                    "reason": {"type": "string", "description": "issue.paused: why"},
                    "counts": {
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                        "description": "issue.finished: deliveries by status",
                    },
                },
            }
        },
    },
}


def _webhook_body(event: str, data: str) -> dict:
    return {
        "type": "object",
        "required": ["id", "event", "created_at", "data"],
        "properties": {
            "id": {"type": "integer", "description": "the delivery's id, the same on retries"},
            "event": {"const": event},
            "created_at": {"type": "string", "format": "date-time"},
            "data": _ref(data),
        },
    }


def _webhook(event: str) -> dict:
    data = "WebhookIssueData" if event.startswith("issue.") else "WebhookSubscriberData"
    return {
        "post": {
            "operationId": "webhook-" + event.replace(".", "-"),
            "summary": str(webhooks.EVENTS[event]),
            "description": (
                "Posted to every webhook an admin registered for this event, after the change "
                "commits. `Bulletin-Signature: t=<unix seconds>,v1=<hex>`: the hex is "
                "HMAC-SHA256 with the webhook's secret over `<t>.<raw body>`; compare in "
                "constant time and refuse an old `t`. Any answer but 2xx is retried with a "
                "growing delay."
            ),
            "parameters": [
                {"name": "Bulletin-Signature", "in": "header", "required": True,
                 "schema": {"type": "string"}},
                {"name": "Bulletin-Event", "in": "header", "required": True,
                 "schema": {"const": event}},
                {"name": "Bulletin-Delivery", "in": "header", "required": True,
                 "schema": {"type": "string"}, "description": "the body's `id`"},
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _webhook_body(event, data)}},
            },
            "responses": {"2XX": {"description": "received"}},
        }
    }  # fmt: skip


def document() -> dict:
    """The OpenAPI document, with this deployment's address as its server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{current_app.config['BULLETIN_NAME']} API",
            "version": "1",
            "description": (
                "Bulletin's JSON API. Every call needs `Authorization: Bearer <token>`; "
                "admins make tokens on the staff site (API 令牌). Errors are RFC 9457 "
                "problem details (`application/problem+json`)."
            ),
        },
        "servers": [{"url": current_app.config["BASE_URL"].rstrip("/") + "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "webhooks": {event: _webhook(event) for event in webhooks.EVENTS},
        "components": {
            "schemas": SCHEMAS | WEBHOOK_SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(document())


@bp.get("/")
def reference():
    """The readable page of the same document: no script, so nothing for the CSP to stop."""
    return render_template("api/reference.html", spec=document())
