"""OpenAPI fragments: pydantic-validated requests, the shared error answers, common headers.

The document is checked against the running app by `tests/test_fuzz.py` (schemathesis): every
status, header and body an endpoint really answers is written down here or next to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask
from flask_smorest import Blueprint
from pydantic import BaseModel

from webapp.api.schemas import DetailErrorSchema, ServerErrorSchema, ValidationErrorSchema
from webapp.config import auth_enabled
from webapp.ratelimit import limited
from webapp.security import JSON, WRITE_METHODS, takes_json_body


def ref(name: str) -> dict[str, Any]:
    """A JSON schema reference to a component."""
    return {"$ref": f"#/components/schemas/{name}"}


def operation_ref(path: str, method: str) -> str:
    """A JSON pointer to an operation of the API, for OpenAPI links."""
    pointer = f"/api/v1{path}".replace("~", "~0").replace("/", "~1")
    return f"#/paths/{pointer}/{method}"


def json_request(blp: Blueprint, schema: str) -> Callable[[Any], Any]:
    """A required JSON request body: documented, with the 415 any other Content-Type gets."""
    body = {"requestBody": {"required": True, "content": {JSON: {"schema": ref(schema)}}}}
    name, description = ERRORS[415]
    document = blp.alt_response(415, schema=ERROR_SCHEMAS[name], description=description)
    return lambda fn: document(blp.doc(**body)(takes_json_body(fn)))


ERROR_SCHEMAS = {
    "DetailError": DetailErrorSchema,
    "ValidationError": ValidationErrorSchema,
    "ServerError": ServerErrorSchema,
}

ERRORS = {
    400: ("DetailError", "The body is not valid JSON"),
    404: ("DetailError", "No such resource"),
    405: ("DetailError", "The method is not allowed on this path"),
    409: ("DetailError", "The job is in a state that does not allow this"),
    410: ("DetailError", "The media item (or upload) has expired"),
    401: ("DetailError", "No API key, or one that is unknown, revoked or expired"),
    403: ("DetailError", "A write sent by another site's page (`Sec-Fetch-Site`, `Origin`)"),
    413: ("DetailError", "The body is too large"),
    415: ("DetailError", "The body is not `application/json`"),
    422: ("ValidationError", "The request failed validation"),
    429: ("DetailError", "Too many requests from this client; `detail` names the limit"),
    503: ("DetailError", "New jobs are paused: media storage cannot take them (see `Retry-After`)"),
    500: ("ServerError", "An unexpected error (the traceback is in the log, never in the body)"),
}


def errors(blp: Blueprint, *codes: int) -> Callable[[Any], Any]:
    """Document an endpoint's error answers, and the 500 that any endpoint may give."""

    def decorate(fn: Any) -> Any:
        for code in (*codes, 500):
            name, description = ERRORS[code]
            extra = {"headers": RETRY_AFTER} if code == 503 else {}
            fn = blp.alt_response(
                code, schema=ERROR_SCHEMAS[name], description=description, **extra
            )(fn)
        return fn

    return decorate


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """Document a pydantic-validated query string, one parameter per field.

    The schemas come from the model itself, so the document states the bounds the
    validation really enforces. An optional field is simply left out of the query.
    """
    schema = model.model_json_schema()
    params = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])
        elif branches:
            prop["anyOf"] = branches
        if prop.get("default", "") is None:
            del prop["default"]
        required = name in schema.get("required", [])
        params.append({"in": "query", "name": name, "required": required, "schema": prop})
    return params


def header(description: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """A response header's documentation."""
    return {"description": description, "required": required, "schema": schema}


REQUEST_ID_HEADER = header(
    "The request's id: the client's own `X-Request-ID` if it is sane, else a new one. "
    "Error bodies carry it as `request_id`.",
    {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
)
NOSNIFF_HEADER = header("Always `nosniff`.", {"type": "string", "const": "nosniff"})

COMMON_HEADERS = {"X-Request-ID": REQUEST_ID_HEADER, "X-Content-Type-Options": NOSNIFF_HEADER}
"""Headers that every answer of the API carries (set in `webapp.errors`)."""

_SECONDS = {"type": "integer", "minimum": 0}
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": header("Requests allowed per window", _SECONDS, required=False),
    "X-RateLimit-Remaining": header("Requests left in this window", _SECONDS, required=False),
    "X-RateLimit-Reset": header("When the window ends (Unix time)", _SECONDS, required=False),
    "Retry-After": header("Seconds until the window ends", _SECONDS, required=False),
}
"""Headers of rate-limited endpoints (on every answer of such an endpoint, 429 included)."""


RETRY_AFTER = {"Retry-After": {**RATE_LIMIT_HEADERS["Retry-After"], "required": True}}
"""The header of a 429 and of a 503: when to ask again."""


def rate_limited(blp: Blueprint, config_key: str, scope: str) -> Callable[[Any], Any]:
    """Limit an endpoint per client (`webapp.ratelimit.limited`) and document its 429."""
    name, description = ERRORS[429]
    document = blp.alt_response(
        429, schema=ERROR_SCHEMAS[name], description=description, headers=RETRY_AFTER
    )
    return lambda fn: document(limited(config_key, scope)(fn))


METHOD_NOT_ALLOWED_HEADERS = {
    "Allow": header("The methods this path accepts", {"type": "string", "minLength": 1})
}


BEARER = "bearerAuth"
SIGNATURE_PARAMETERS = [
    {
        "in": "query",
        "name": "expires",
        "required": False,
        "description": "With `signature`: when this signed URL stops working (Unix seconds)",
        "schema": {"type": "integer"},
    },
    {
        "in": "query",
        "name": "signature",
        "required": False,
        "description": "The URL's signature, as the API handed it out: no key needed",
        "schema": {"type": "string"},
    },
]


USER_PARAMETER = {
    "in": "query",
    "name": "user",
    "required": False,
    "description": "A user's name: only that user's jobs (keys with the `admin` scope; "
    "for others the list is always their own)",
    "schema": {"type": "string"},
}


class CommonHeadersPlugin(BasePlugin):
    """Document the headers that every answer carries on every response of every operation,
    and, with accounts on, the bearer key and the scope each operation needs."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.accounts = auth_enabled(app.config)

    def init_spec(self, spec: APISpec) -> None:
        """Register the headers as components, referenced from each response."""
        self.spec = spec
        for name, definition in {**COMMON_HEADERS, **RATE_LIMIT_HEADERS}.items():
            spec.components.header(name, definition)
        if self.accounts:
            spec.components.security_scheme(
                BEARER,
                {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Darkroom API key (`dr_…`), made on Settings or with "
                    "`flask --app wsgi keys create`",
                },
            )

    def _document_access(self, rule: Any, method: str, operation: dict[str, Any]) -> None:
        """The key and scope an operation needs, its 401 and 403 (accounts on)."""
        from webapp.auth import OPEN, scope_of, signed_download

        view = self.app.view_functions.get(rule.endpoint)
        needed = scope_of(view, method)
        signed = signed_download(rule.endpoint, method)
        responses = operation.setdefault("responses", {})
        if needed == OPEN:
            operation["security"] = []
            return
        operation["security"] = [{BEARER: []}]
        note = f"Needs an API key with the `{needed}` scope (or `admin`)."
        operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
        name, description = ERRORS[401]
        responses.setdefault(
            "401",
            {
                "description": description,
                "content": {JSON: {"schema": ref(name)}},
                "headers": {"WWW-Authenticate": header("`Bearer`", {"type": "string"})},
            },
        )
        responses.setdefault(
            "403",
            {
                "description": "The key lacks the scope this operation needs"
                + (", or a signed URL expired or was altered" if signed else ""),
                "content": {JSON: {"schema": ref("DetailError")}},
            },
        )
        if rule.endpoint == "jobs.Jobs" and method.lower() == "get":
            operation.setdefault("parameters", []).append(USER_PARAMETER)
        if signed:
            operation.setdefault("parameters", []).extend(SIGNATURE_PARAMETERS)
            operation["security"] = [{BEARER: []}, {}]

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        """Add the common headers to each response (after flask-smorest built them).

        An operation that may answer 429 is rate-limited: all its answers carry the limiter's
        headers. An operation that writes may answer 403 (a write from another site's page).
        """
        rule = kwargs.get("rule")
        for method, operation in (operations or {}).items():
            if self.accounts and rule is not None:
                self._document_access(rule, method, operation)
            responses = operation.get("responses", {})
            if method.upper() in WRITE_METHODS:
                # What `webapp.security.guard_api_write` answers a cross-site write.
                name, description = ERRORS[403]
                responses.setdefault(
                    "403", {"description": description, "content": {JSON: {"schema": ref(name)}}}
                )
            limited = "429" in responses or 429 in responses
            for response in responses.values():
                if isinstance(response, dict) and "$ref" not in response:
                    headers = response.setdefault("headers", {})
                    for name in COMMON_HEADERS:
                        headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})
                    if limited:
                        for name in RATE_LIMIT_HEADERS:
                            headers.setdefault(name, {"$ref": f"#/components/headers/{name}"})
