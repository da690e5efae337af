"""A loopback fake of Segment's Profile API (traits of user profiles), for tests of the real client.

`FakeProfileApi` serves `GET /v1/spaces/<space>/collections/users/profiles/<id_type>:<id>/traits`
on 127.0.0.1 from a background thread, with basic auth (the access token as the user name, an
empty password), `limit`/`next` pagination with a `cursor` object, `include` and
`class=audience|computed_trait`. A profile's audiences are boolean traits, as Engage stores them.
Faults (`fail_next`) are consumed one per request, in order, before authentication, like a rate
limiter in front of the API.

Wire shapes follow ../shared/reference/segment: `profile-api-traits-200.json` (traits and cursor),
`profile-api-404.json` and `profile-api-error-body.json` (error envelope, bodies copied below).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlencode

from tests.fakes.loopback import FakeServer, JsonHandler, LoopbackFake, Response

Body = dict[str, Any]

NOT_FOUND: Body = {"error": {"code": "not_found", "message": "Profile was not found."}}
_MESSAGES = {
    400: ("validation_error", "The parameter `collection` has invalid character(s) `!`"),
    401: ("authentication_error", "Failure to properly authenticate yourself in the request."),
    429: ("rate_limit_error", "Too many requests hit the API too quickly."),
}

_ROUTE = re.compile(
    r"^/v1/spaces/(?P<space>[^/]+)/collections/users/profiles/(?P<external>[^/]+)/traits/?$"
)


def error_body(status: int) -> Body:
    """Segment's error envelope (profile-api-error-body.json) for `status`."""
    if status == 404:
        return {"error": dict(NOT_FOUND["error"])}
    code, message = _MESSAGES.get(status, ("server_error", "Something went wrong."))
    return {"error": {"code": code, "message": message}}


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as received: the decoded external id, its query, and whether auth passed."""

    path: str
    external_id: str | None
    query: dict[str, str]
    authorized: bool


@dataclass(slots=True)
class _Profile:
    traits: dict[str, Any]
    audiences: dict[str, bool]
    computed: set[str]


class FakeProfileApi(LoopbackFake):
    """The Profile API of one space, served on 127.0.0.1 (a context manager).

    `page_size` caps every page below the requested `limit`, to exercise pagination.
    """

    def __init__(
        self, space_id: str = "spa_test", token: str = "pat-test", *, page_size: int = 200
    ):
        self.space_id = space_id
        self.token = token
        self.page_size = page_size
        self._profiles: dict[str, _Profile] = {}
        self._faults: deque[Response] = deque()
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()

    # -- lifecycle ------------------------------------------------------------------------

    def _classes(self) -> tuple[type[FakeServer], type[BaseHTTPRequestHandler]]:
        return _Server, _Handler

    def _release(self) -> None:
        self._gate.set()

    # -- data, faults, inspection ---------------------------------------------------------

    def put_profile(
        self,
        user_id: str,
        *,
        traits: Mapping[str, Any] | None = None,
        audiences: Mapping[str, bool] | None = None,
        computed: Mapping[str, Any] | None = None,
    ) -> None:
        """Store the profile `user_id:<user_id>`: custom traits, audience flags, computed traits."""
        with self._lock:
            self._profiles[f"user_id:{user_id}"] = _Profile(
                traits={**(traits or {}), **(computed or {})},
                audiences=dict(audiences or {}),
                computed=set(computed or {}),
            )

    def fail_next(
        self,
        status: int,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `count` requests with `status` (Segment's error body unless `body`)."""
        response = Response(status, error_body(status) if body is None else body, headers or {})
        with self._lock:
            self._faults.extend([response] * count)

    def hold(self) -> None:
        """Park every request from now on until `release()` (a slow or hanging API)."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    # -- serving (called from the server's threads) ---------------------------------------

    def handle(self, path: str, query: dict[str, str], headers: Mapping[str, str]) -> Response:
        match = _ROUTE.match(path)
        external = unquote(match["external"]) if match else None
        authorized = self._authorized(headers)
        with self._lock:
            self._seen.append(Seen(path, external, dict(query), authorized))
        self._gate.wait(timeout=30)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                return fault
            if not authorized:
                return Response(401, error_body(401))
            if match is None or match["space"] != self.space_id or external is None:
                return Response(404, error_body(404))
            profile = self._profiles.get(external)
            if profile is None:
                return Response(404, error_body(404))
            return self._traits(path, profile, query)

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, encoded = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.token}:"

    def _traits(self, path: str, profile: _Profile, query: dict[str, str]) -> Response:
        try:
            limit = int(query.get("limit", "10"))
        except ValueError:
            return Response(400, error_body(400))
        if not 1 <= limit <= 200:
            return Response(400, error_body(400))
        selected = _select(profile, query.get("class"), query.get("include"))
        if selected is None:
            return Response(400, error_body(400))
        offset = _offset(query.get("next", ""))
        if offset is None:
            return Response(400, error_body(400))
        names = sorted(selected)
        end = min(offset + min(limit, self.page_size), len(names))
        more = end < len(names)
        following = _token(end) if more else ""
        cursor_query = {k: v for k, v in query.items() if k != "next"}
        if more:
            cursor_query["next"] = following
        cursor = {"url": f"{self.url}{path}?{urlencode(cursor_query)}", "has_more": more}
        cursor |= {"next": following, "limit": limit}
        page = {name: selected[name] for name in names[offset:end]}
        return Response(200, {"traits": page, "cursor": cursor})


def _select(profile: _Profile, kind: str | None, include: str | None) -> dict[str, Any] | None:
    if kind is None:
        selected: dict[str, Any] = {**profile.traits, **profile.audiences}
    elif kind == "audience":
        selected = dict(profile.audiences)
    elif kind == "computed_trait":
        selected = {k: v for k, v in profile.traits.items() if k in profile.computed}
    else:
        return None
    if include:
        wanted = {name.strip() for name in include.split(",")}
        selected = {k: v for k, v in selected.items() if k in wanted}
    return selected


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _offset(token: str) -> int | None:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    kind, _, number = text.partition(":")
    return int(number) if kind == "o" and number.isdigit() else None


class _Server(FakeServer):
    fake: FakeProfileApi


class _Handler(JsonHandler):
    def base_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Request-Id": str(uuid.uuid4())}
