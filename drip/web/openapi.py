"""The OpenAPI 3.1 document for the JSON API."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

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
        "security": [],
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
                        },
                    }
                }
            },
        },
        "responses": {
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
            "422": error_response("A field is invalid; `field` names it"),
            "429": error_response("Too many requests"),
            "503": error_response("A dependency is down; retry later"),
        },
    }


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "drip", "version": "1"},
        "paths": {"/api/v1/subscribers": {"post": _signup()}},
    }
