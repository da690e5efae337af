"""Who may preview: the preview key (`BRIDGE_PREVIEW_KEY`) or the admin token.

The secret comes as the `X-Preview-Key` header, the `key` query parameter (so that
Contentful's content preview URL can carry it), or `Authorization: Bearer <secret>`.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from assembly.preview.exceptions import PreviewDisabled, PreviewUnauthorized
from core.admin import AdminAccess
from core.services import started

KEY_HEADER = "x-preview-key"
KEY_PARAM = "key"


def require_preview(request: Request, preview_key: str | None) -> None:
    admin = started(request, AdminAccess).token
    secrets = [s for s in (preview_key, admin) if s]
    if not secrets:
        raise PreviewDisabled(
            "preview is disabled: set BRIDGE_PREVIEW_KEY (or BRIDGE_ADMIN_TOKEN) to enable it"
        )
    given = _given(request)
    if given is None:
        raise PreviewUnauthorized(
            "preview needs the preview key: the X-Preview-Key header or ?key= "
            "(or the admin token as a bearer token)"
        )
    # Compare with every secret, always, so the timing says nothing about which one matched.
    matches = [hmac.compare_digest(given.encode(), s.encode()) for s in secrets]
    if not any(matches):
        raise PreviewUnauthorized("the preview key is wrong")


def _given(request: Request) -> str | None:
    header = request.headers.get(KEY_HEADER)
    if header:
        return header
    param = request.query_params.get(KEY_PARAM)
    if param:
        return param
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None
