"""Bearer-token guard for `/admin/*` (BRIDGE_ADMIN_TOKEN; unset → the admin API is disabled)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from core.errors import NotFound, Unauthorized
from core.services import started


@dataclass
class AdminAccess:
    """The admin bearer token (BRIDGE_ADMIN_TOKEN); None: the admin API is disabled."""

    token: str | None


class AdminDisabled(NotFound):
    """No admin token is configured, so the admin API does not exist."""


def require_admin(request: Request) -> str:
    """FastAPI dependency: checks `Authorization: Bearer <token>`; returns who called.

    The caller's name for audit logs comes from the `X-Admin-User` header (default `admin`).
    """
    token = started(request, AdminAccess).token
    if token is None:
        raise AdminDisabled("the admin API is disabled: set BRIDGE_ADMIN_TOKEN to enable it")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("a valid admin bearer token is required")
    return request.headers.get("x-admin-user", "admin")[:100]
