"""OpenAPI fragments for pydantic-validated requests and the shared error answers."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def ref(name: str) -> dict[str, Any]:
    """A JSON schema reference to a component."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: str) -> dict[str, Any]:
    """Document a required JSON request body."""
    return {"requestBody": {"required": True, "content": {JSON: {"schema": ref(schema)}}}}


ERRORS = {
    400: ("DetailError", "The body is not valid JSON"),
    404: ("DetailError", "No such resource"),
    409: ("DetailError", "The job already ended"),
    410: ("DetailError", "The media item has expired"),
    413: ("DetailError", "The body is too large"),
    422: ("ValidationError", "The request failed validation"),
}
