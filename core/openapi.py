"""The served OpenAPI schema keeps the error contract: every 4xx/5xx is `{"error", "detail"}`.

FastAPI documents its own validation error (`HTTPValidationError`, a list of problems) for every
operation with parameters or a body; Microbridge answers those with `InvalidRequest` in the one
error shape instead (core/errors.py). This rewrites the schema to say what the service does.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "error name, e.g. InvalidRequest"},
        "detail": {"type": "string", "description": "what was wrong, for a person"},
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def error_contract(schema: dict[str, Any]) -> dict[str, Any]:
    """Point every documented error response at the `Error` schema (in place; returned)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if str(status)[0] in "45":
                    response["content"] = {"application/json": {"schema": _ERROR_REF}}
                    if str(status) == "422":
                        response.setdefault("description", "InvalidRequest")
                        if response["description"] == "Validation Error":
                            response["description"] = "InvalidRequest: the detail names each field"
    for name in _FASTAPI_ONLY:
        components.pop(name, None)
    return schema
