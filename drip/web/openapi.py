"""The OpenAPI document for the JSON API."""

from typing import Any

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "field": {"type": ["string", "null"]},
                "message": {"type": "string"},
            },
            "required": ["field", "message"],
        }
    },
    "required": ["error"],
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "drip", "version": "1"},
    "paths": {
        "/api/v1/subscribers": {
            "post": {
                "summary": "Sign up for the course (double opt-in: a confirmation email follows)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["email"],
                                "properties": {
                                    "email": {
                                        "type": "string",
                                        "format": "email",
                                        "maxLength": 254,
                                    },
                                    "first_name": {"type": "string", "maxLength": 80},
                                    "timezone": {
                                        "type": "string",
                                        "description": "IANA zone (Europe/Berlin); UTC when absent",
                                    },
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
                                }
                            }
                        },
                    },
                    "400": _error_response("The body is not a JSON object"),
                    "413": _error_response("The body is too large"),
                    "415": _error_response("The body is not JSON"),
                    "422": _error_response("A field is invalid; `field` names it"),
                    "429": _error_response("Too many requests"),
                    "503": _error_response("A dependency is down; retry later"),
                },
            }
        }
    },
}
