"""The OpenAPI 3.1 document for the JSON API."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from drip.integrations import feed
from drip.subscribers.validation import CONSENT_SOURCE_PATTERN
from drip.web.api_v1 import ENROLLMENT_STATUSES, LISTED_STATUSES
from drip.web.openapi_schemas import (
    email_schema,
    error_response,
    first_name_schema,
    timezone_schema,
)


def _signup() -> dict[str, Any]:
    return {
        "operationId": "createSubscriber",
        "summary": "Sign up for the course (double opt-in: a confirmation email follows)",
        "description": (
            "Anonymous: a double opt-in, answered 202 whoever the address is. With a write "
            "key and `consent` (where the person opted in, and that they confirmed there): "
            "subscribed, confirmed and enrolled at once, answered 200 with the subscriber."
        ),
        "security": [{}, {"apiKey": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["email"],
                        "properties": {
                            "email": email_schema(),
                            "first_name": first_name_schema(),
                            "timezone": timezone_schema(),
                            "consent": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["source", "confirmed"],
                                "properties": {
                                    "source": {
                                        "type": "string",
                                        "pattern": CONSENT_SOURCE_PATTERN,
                                    },
                                    "confirmed": {"const": True},
                                },
                                "description": "Needs a write key",
                            },
                        },
                    }
                }
            },
        },
        "responses": {
            "200": _json(_SUBSCRIBER, "With a write key and consent: the subscriber, enrolled"),
            "202": {
                "description": "Accepted; the same answer for new and existing addresses",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string"},
                                "message": {"type": "string"},
                            },
                            "required": ["status", "message"],
                        }
                    }
                },
            },
            "400": error_response("The body is not a JSON object"),
            "413": error_response("The body is too large"),
            "415": error_response("The body is not JSON"),
            **_WRITE_ERRORS,
            "409": error_response("With consent: the address is suppressed (bounce, complaint)"),
            "422": error_response("A field is invalid; `field` names it"),
            "429": error_response("Too many requests"),
            "503": error_response("A dependency is down; retry later"),
        },
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_STAMP = {"type": ["string", "null"], "format": "date-time"}
_ENROLLMENT = {
    "type": "object",
    "required": [
        "id",
        "subscriber_id",
        "course",
        "status",
        "next_lesson",
        "next_due_at",
        "lessons_sent",
        "started_at",
        "completed_at",
    ],
    "properties": {
        "id": {"type": "integer"},
        "subscriber_id": {"type": "integer"},
        "course": {"type": "string"},
        "status": {"enum": list(ENROLLMENT_STATUSES)},
        "next_lesson": {"type": "integer"},
        "next_due_at": _STAMP,
        "lessons_sent": {"type": "integer"},
        "started_at": {"type": "string", "format": "date-time"},
        "completed_at": _STAMP,
    },
}
_SUBSCRIBER = {
    "type": "object",
    "required": [
        "id",
        "email",
        "first_name",
        "timezone",
        "status",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
        "enrollment",
    ],
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string"},
        "first_name": {"type": "string"},
        "timezone": {"type": "string"},
        "status": {"enum": list(LISTED_STATUSES)},
        "created_at": {"type": "string", "format": "date-time"},
        "confirmed_at": _STAMP,
        "unsubscribed_at": _STAMP,
        "enrollment": {"oneOf": [_ENROLLMENT, {"type": "null"}]},
    },
}
_EVENT = {
    "type": "object",
    "required": ["id", "kind", "occurred_at", "subscriber_id", "lesson", "detail"],
    "properties": {
        "id": {"type": "string", "description": "Stable: use it to drop duplicates"},
        "kind": {"enum": list(feed.KINDS)},
        "occurred_at": {"type": "string", "format": "date-time"},
        "subscriber_id": {"type": ["integer", "null"]},
        "lesson": {"type": ["integer", "null"]},
        "detail": {"type": ["string", "null"]},
    },
}


def _page(item: dict[str, Any], cursor: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": item},
            "next_cursor": {"oneOf": [cursor, {"type": "null"}]},
        },
    }


_ID_CURSOR = {
    "type": "string",
    "pattern": "^[0-9]{1,9}$",
    "description": "Opaque: next_cursor from the previous page",
}
_FEED_CURSOR = {
    "type": "string",
    "pattern": "^[0-9]{1,17}\\.[0-9]{1,2}\\.[0-9]{1,9}$",
    "description": "Opaque: next_cursor from the previous answer",
}
_LIMIT = _query(
    "limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}, "Items per page"
)
_AUTH_ERRORS = {"401": error_response("No live API key (missing, unknown or revoked)")}
_WRITE_ERRORS = {**_AUTH_ERRORS, "403": error_response("The key may only read")}
_SUBSCRIBER_ID = {
    "name": "subscriber_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
}
_TO_SUBSCRIBER = {"parameters": {"subscriber_id": "$response.body#/id"}}


def _read(
    op_id: str,
    summary: str,
    ok: dict[str, Any],
    *,
    params: list[Any],
    errors: dict[str, Any],
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if links:
        ok = {**ok, "links": links}
    return {
        "operationId": op_id,
        "summary": summary,
        "parameters": params,
        "responses": {"200": ok, **_AUTH_ERRORS, **errors},
    }


def _subscriber_links() -> dict[str, Any]:
    return {
        name: {"operationId": name, **_TO_SUBSCRIBER}
        for name in (
            "getSubscriber",
            "exportSubscriber",
            "pauseSubscriber",
            "resumeSubscriber",
            "restartSubscriber",
            "unsubscribeSubscriber",
            "eraseSubscriber",
        )
    }


def _action(op_id: str, summary: str) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "summary": summary,
        "parameters": [_SUBSCRIBER_ID],
        "responses": {
            "200": {
                **_json(_SUBSCRIBER, "Done; the subscriber as now"),
                "links": {"getSubscriber": {"operationId": "getSubscriber", **_TO_SUBSCRIBER}},
            },
            **_WRITE_ERRORS,
            "404": error_response("No such subscriber"),
            "409": error_response("Not possible in the subscriber's current state"),
        },
    }


def _subscriber_paths() -> dict[str, Any]:
    not_found = {"404": error_response("No such subscriber")}
    invalid = {"422": error_response("A query parameter is invalid; `field` names it")}
    listing = _read(
        "listSubscribers",
        "Subscribers, oldest first, a page at a time",
        _json(_page(_SUBSCRIBER, _ID_CURSOR), "A page"),
        params=[
            _query("status", {"enum": list(LISTED_STATUSES)}, "Only this status"),
            _query("email", {"type": "string", "maxLength": 254}, "Only this address"),
            _query(
                "lesson",
                {"type": "integer", "minimum": 1, "maximum": 1000},
                "Only those whose next lesson is this one",
            ),
            _query("signed_up_from", {"type": "string", "format": "date"}, "Signed up on or after"),
            _query(
                "signed_up_until", {"type": "string", "format": "date"}, "Signed up on or before"
            ),
            _query("cursor", _ID_CURSOR, "Where the previous page ended"),
            _LIMIT,
        ],
        errors=invalid,
        links={
            name: {
                "operationId": name,
                "parameters": {"subscriber_id": "$response.body#/items/0/id"},
            }
            for name in ("getSubscriber", "exportSubscriber")
        },
    )
    signup = _signup()
    return {
        "/api/v1/subscribers": {"get": listing, "post": signup},
        "/api/v1/subscribers/{subscriber_id}": {
            "get": _read(
                "getSubscriber",
                "One subscriber and where they are in the course",
                _json(_SUBSCRIBER, "The subscriber"),
                params=[_SUBSCRIBER_ID],
                errors=not_found,
                links=_subscriber_links(),
            ),
            "delete": {
                "operationId": "eraseSubscriber",
                "summary": "Erase the person's data (GDPR); the address is suppressed",
                "parameters": [_SUBSCRIBER_ID],
                "responses": {"204": {"description": "Erased"}, **_WRITE_ERRORS, **not_found},
            },
        },
        "/api/v1/subscribers/{subscriber_id}/export": {
            "get": _read(
                "exportSubscriber",
                "Everything kept about the person (GDPR access)",
                _json({"type": "object"}, "The data"),
                params=[_SUBSCRIBER_ID],
                errors=not_found,
            ),
        },
        **{
            f"/api/v1/subscribers/{{subscriber_id}}/{verb}": {
                "post": _action(f"{verb}Subscriber", summary)
            }
            for verb, summary in (
                ("unsubscribe", "Stop all mail and withdraw consent"),
                ("pause", "Pause the running course"),
                ("resume", "Resume a paused course at the next send slot"),
                ("restart", "Start the course again from lesson 1"),
            )
        },
    }


def _other_paths() -> dict[str, Any]:
    invalid = {"422": error_response("A query parameter is invalid; `field` names it")}
    stats = {
        "type": "object",
        "required": ["funnel", "lessons"],
        "properties": {
            "funnel": {
                "type": "array",
                "items": {"type": "object", "required": ["step", "count", "exit"]},
            },
            "lessons": {
                "type": "array",
                "items": {"type": "object", "required": ["lesson", "sent"]},
            },
        },
    }
    return {
        "/api/v1/enrollments": {
            "get": _read(
                "listEnrollments",
                "Where each subscriber is in the course, next lesson and when due",
                _json(_page(_ENROLLMENT, _ID_CURSOR), "A page"),
                params=[
                    _query("status", {"enum": list(ENROLLMENT_STATUSES)}, "Only this status"),
                    _query("cursor", _ID_CURSOR, "Where the previous page ended"),
                    _LIMIT,
                ],
                errors=invalid,
            )
        },
        "/api/v1/events": {
            "get": _read(
                "listEvents",
                "What happened, oldest first; poll with next_cursor",
                _json(_page(_EVENT, _FEED_CURSOR), "Items after the cursor"),
                params=[_query("cursor", _FEED_CURSOR, "The last next_cursor"), _LIMIT],
                errors=invalid,
            )
        },
        "/api/v1/stats": {
            "get": _read(
                "getStats",
                "The funnel and per-lesson numbers the dashboard shows",
                _json(stats, "The numbers"),
                params=[],
                errors={},
            )
        },
    }


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "drip", "version": "1"},
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key from `drip api-keys create NAME --scope read|write`",
                }
            }
        },
        "security": [{"apiKey": []}],
        "paths": {**_subscriber_paths(), **_other_paths()},
    }
