"""A loopback fake of Contentful's Content Management API (CMA), for the real SDK.

`FakeContentfulManagement` serves one space environment on 127.0.0.1: content types (create,
update, activate), their editor interfaces, and the entries collection (`content_type`,
`fields.<id>[exists]`, `limit`, `skip`; `total` counts every match). It keeps Contentful's rules
that `model apply` depends on:

- every write names the version it read (`X-Contentful-Version`); another one answers 409
  `VersionMismatch`, and a write without it to an existing resource too;
- a content type is created with version 1, each write adds one, activation sets
  `publishedVersion` to the version activated and adds one;
- the editor interface appears at the first activation, with a default control per field, and
  activations add controls for new fields and drop those of deleted ones;
- a field may leave a content type (absent, or `deleted: true`) only when the active version has
  it `omitted: true`; a field's type never changes (both 422 `ValidationFailed`);
- activation drops the fields marked `deleted`.

Shapes (`sys` of content types, editor interfaces and entries, Link objects, error envelopes)
follow ../shared/reference/contentful/ninetailed-content-types.cma.json and
ninetailed-entries.cma.json; errors reuse the recorded envelopes of `tests.fakes.contentful`.
Faults are consumed one per request, before authentication: `fail_next` answers with a status
(429 with `X-Contentful-RateLimit-Reset`, 5xx, ...), `edit_before_next_write` lets "another
editor" save a content type just before our next write to it, which then meets a real 409.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.contentful import error_body
from tests.fakes.loopback import FakeServer, JsonHandler, LoopbackFake, Response

Item = dict[str, Any]

CONTENT_TYPE = "application/vnd.contentful.management.v1+json"
USER_ID = "0pSeycD8koEuhhmyfCTLeH"  # the user of ninetailed-entries.cma.json
_DEFAULT_WIDGETS = {
    "Symbol": "singleLine",
    "Text": "markdown",
    "Integer": "numberEditor",
    "Number": "numberEditor",
    "Boolean": "boolean",
    "Date": "datePicker",
    "Object": "objectEditor",
    "Link": "entryLinkEditor",
    "Array": "entryLinksEditor",
}


@dataclass
class _Type:
    current: Item
    active: Item | None = None
    editor: Item | None = None


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    status: int = 200


class FakeContentfulManagement(LoopbackFake):
    """The CMA of one space environment on 127.0.0.1 (a context manager)."""

    def __init__(
        self,
        space_id: str = "piv6jnf4q2ia",
        environment: str = "master",
        token: str = "CFPAT-fake-management-token",
    ) -> None:
        self.space_id = space_id
        self.environment = environment
        self.token = token
        self._types: dict[str, _Type] = {}
        self._entries: list[Item] = []
        self._faults: deque[Response] = deque()
        self._edits: set[str] = set()
        self._requests: list[Request] = []
        self._lock = threading.Lock()

    def _classes(self) -> tuple[type[FakeServer], type[BaseHTTPRequestHandler]]:
        return _Server, _Handler

    # -- seeding and inspection (tests) ---------------------------------------------------

    def add_content_type(self, body: Mapping[str, Any], *, active: bool = True) -> Item:
        """A content type (body with `sys.id`, or a whole CMA content type), active or a draft."""
        type_id = str(body["sys"]["id"])
        with self._lock:
            self._types[type_id] = _Type(self._stamped_type(type_id, body, version=1))
            if active:
                self._activate(type_id)
            return copy.deepcopy(self._types[type_id].current)

    def add_entry(self, type_id: str, fields: Mapping[str, Mapping[str, Any]]) -> Item:
        """An entry (`fields`: `{field: {locale: value}}`), shaped like the reference's."""
        entry_id = uuid.uuid4().hex[:22]
        entry = {
            "metadata": {"tags": [], "concepts": []},
            "sys": {
                **self._sys(entry_id, "Entry", version=2),
                **_published(1, _now()),
                "contentType": _link("ContentType", type_id),
                "fieldStatus": {"*": {"en-US": "published"}},
                "automationTags": [],
                "urn": self._urn("entries", entry_id),
            },
            "fields": copy.deepcopy(dict(fields)),
        }
        with self._lock:
            self._entries.append(entry)
        return copy.deepcopy(entry)

    def content_type(self, type_id: str) -> Item | None:
        with self._lock:
            record = self._types.get(type_id)
            return copy.deepcopy(record.current) if record else None

    def active_content_type(self, type_id: str) -> Item | None:
        with self._lock:
            record = self._types.get(type_id)
            return copy.deepcopy(record.active) if record and record.active else None

    def editor_interface(self, type_id: str) -> Item | None:
        with self._lock:
            record = self._types.get(type_id)
            return copy.deepcopy(record.editor) if record and record.editor else None

    def fail_next(
        self, status: int, count: int = 1, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next `count` requests with `status` and its recorded body."""
        with self._lock:
            self._faults.extend([Response(status, error_body(status), dict(headers or {}))] * count)

    def edit_before_next_write(self, type_id: str) -> None:
        """Another editor saves `type_id` (version + 1) just before our next write to it."""
        with self._lock:
            self._edits.add(type_id)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    # -- serving --------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: Any
    ) -> Response:
        with self._lock:
            response = self._respond(method, path, query, headers, body)
            self._requests.append(Request(method, path, dict(query), response.status))
            return response

    def _respond(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: Any
    ) -> Response:
        if self._faults:
            return self._faults.popleft()
        if headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401)
        prefix = f"/spaces/{self.space_id}/environments/{self.environment}/"
        if not path.startswith(prefix):
            return _error(404)
        parts = path.removeprefix(prefix).strip("/").split("/")
        version = headers.get("X-Contentful-Version")
        return self._route(method, parts, query, version, body)

    def _route(
        self, method: str, parts: list[str], query: dict[str, str], version: str | None, body: Any
    ) -> Response:
        match method, parts:
            case "GET", ["entries"]:
                return Response(200, self._entry_query(query))
            case "GET", ["content_types"]:
                items = [t.current for t in self._types.values()]
                return Response(200, _array(items, query))
            case "GET", ["content_types", type_id]:
                return self._found(self._types.get(type_id), "current")
            case "PUT", ["content_types", type_id]:
                return self._put_type(type_id, version, body)
            case "PUT", ["content_types", type_id, "published"]:
                return self._publish(type_id, version)
            case "GET", ["content_types", type_id, "editor_interface"]:
                return self._found(self._types.get(type_id), "editor")
            case "PUT", ["content_types", type_id, "editor_interface"]:
                return self._put_editor(type_id, version, body)
        return _error(404)

    def _found(self, record: _Type | None, part: str) -> Response:
        item = getattr(record, part) if record else None
        return Response(200, copy.deepcopy(item)) if item else _error(404)

    def _put_type(self, type_id: str, version: str | None, body: Any) -> Response:
        record = self._types.get(type_id)
        if record is None:
            if version is not None:
                return _error(404)
            self._types[type_id] = _Type(self._stamped_type(type_id, body, version=1))
            return Response(201, copy.deepcopy(self._types[type_id].current))
        conflict = self._conflict(type_id, record.current, version)
        if conflict:
            return conflict
        problem = _field_problem(record.active, body.get("fields", []))
        if problem:
            return _invalid(problem)
        old = record.current["sys"]
        record.current = self._stamped_type(type_id, body, version=old["version"] + 1, old=old)
        return Response(200, copy.deepcopy(record.current))

    def _publish(self, type_id: str, version: str | None) -> Response:
        record = self._types.get(type_id)
        if record is None:
            return _error(404)
        conflict = self._conflict(type_id, record.current, version)
        return conflict or Response(200, self._activate(type_id))

    def _put_editor(self, type_id: str, version: str | None, body: Any) -> Response:
        record = self._types.get(type_id)
        if record is None or record.editor is None:
            return _error(404)
        conflict = self._conflict(type_id, record.editor, version)
        if conflict:
            return conflict
        editor = {**copy.deepcopy(body), "sys": record.editor["sys"]}
        editor["sys"] = {**editor["sys"], "version": editor["sys"]["version"] + 1}
        editor["sys"]["updatedAt"] = _now()
        record.editor = editor
        return Response(200, copy.deepcopy(editor))

    def _conflict(self, type_id: str, item: Item, version: str | None) -> Response | None:
        if item["sys"]["type"] == "ContentType" and type_id in self._edits:
            self._edits.discard(type_id)  # another editor saved it a moment ago
            item["sys"]["version"] += 1
            item["sys"]["updatedAt"] = _now()
        if version is None or int(version) != item["sys"]["version"]:
            return _error(409, error_id="VersionMismatch")
        return None

    def _activate(self, type_id: str) -> Item:
        record = self._types[type_id]
        now = _now()
        sys_ = record.current["sys"]
        fields = [f for f in record.current["fields"] if not f.get("deleted")]
        counter = sys_.get("publishedCounter", 0) + 1
        sys_ |= _published(sys_["version"], now, sys_.get("firstPublishedAt"), counter)
        sys_ |= {"version": sys_["version"] + 1, "updatedAt": now}
        record.current["fields"] = fields
        record.active = copy.deepcopy(record.current)
        record.editor = self._editor_after(type_id, record.editor, fields)
        return copy.deepcopy(record.current)

    def _editor_after(self, type_id: str, editor: Item | None, fields: list[Item]) -> Item:
        if editor is None:
            sys_ = {**self._sys("default", "EditorInterface", version=0)}
            sys_["contentType"] = _link("ContentType", type_id)
            editor = {"sys": sys_, "controls": []}
        ids = [f["id"] for f in fields]
        kept = [c for c in editor["controls"] if c.get("fieldId") in ids]
        known = {c["fieldId"] for c in kept}
        added = [_default_control(f) for f in fields if f["id"] not in known]
        editor["sys"] = {**editor["sys"], "version": editor["sys"]["version"] + 1}
        return {**editor, "controls": kept + added}

    def _entry_query(self, query: dict[str, str]) -> Item:
        matches = [e for e in self._entries if _matches(e, query)]
        return _array(matches, query)

    # -- shapes ---------------------------------------------------------------------------

    def _stamped_type(
        self, type_id: str, body: Mapping[str, Any], *, version: int, old: Item | None = None
    ) -> Item:
        now = _now()
        sys_ = dict(old) if old else self._sys(type_id, "ContentType", version=version)
        sys_ |= {"version": version, "updatedAt": now, "urn": self._urn("content_types", type_id)}
        content = {k: copy.deepcopy(v) for k, v in body.items() if k != "sys"}
        content.setdefault("fields", [])
        return {"sys": sys_, **content}

    def _sys(self, resource_id: str, kind: str, *, version: int) -> Item:
        now = _now()
        user = _link("User", USER_ID)
        return {
            "space": _link("Space", self.space_id),
            "id": resource_id,
            "type": kind,
            "createdAt": now,
            "updatedAt": now,
            "environment": _link("Environment", self.environment),
            "createdBy": user,
            "updatedBy": user,
            "version": version,
        }

    def _urn(self, collection: str, resource_id: str) -> str:
        return (
            f"crn:contentful:::content:spaces/{self.space_id}/environments/"
            f"{self.environment}/{collection}/{resource_id}"
        )


class _Server(FakeServer):
    fake: FakeContentfulManagement


class _Handler(JsonHandler):
    """Every method goes to `fake.handle(method, path, query, headers, body)`."""

    def base_headers(self) -> dict[str, str]:
        return {"Content-Type": CONTENT_TYPE, "X-Contentful-Request-Id": uuid.uuid4().hex}

    def do_GET(self) -> None:
        self._answer("GET")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        response = self.server.fake.handle(method, parts.path, query, self.headers, body)
        payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        for name, value in {**self.base_headers(), **response.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _field_problem(active: Item | None, fields: list[Item]) -> str | None:
    """Why Contentful would refuse these fields, given the active version; None when fine."""
    before = {f["id"]: f for f in (active or {}).get("fields", [])}
    after = {f["id"]: f for f in fields}
    for field_id, old in before.items():
        new = after.get(field_id)
        if (new is None or new.get("deleted")) and not old.get("omitted"):
            return f"field {field_id} must be omitted and activated before it is deleted"
        if new is not None and (new.get("type"), new.get("linkType")) != (
            old.get("type"),
            old.get("linkType"),
        ):
            return f"field {field_id} cannot change its type"
    return None


def _matches(entry: Item, query: Mapping[str, str]) -> bool:
    wanted_type = query.get("content_type")
    if wanted_type and entry["sys"]["contentType"]["sys"]["id"] != wanted_type:
        return False
    for key, value in query.items():
        if key.startswith("fields.") and key.endswith("[exists]"):
            field_id = key.removeprefix("fields.").removesuffix("[exists]")
            has = any(v is not None for v in entry["fields"].get(field_id, {}).values())
            if has != (value == "true"):
                return False
    return True


def _array(items: list[Item], query: Mapping[str, str]) -> Item:
    skip, limit = int(query.get("skip", 0)), int(query.get("limit", 100))
    return {
        "sys": {"type": "Array"},
        "total": len(items),
        "skip": skip,
        "limit": limit,
        "items": copy.deepcopy(items[skip : skip + limit]),
    }


def _published(version: int, now: str, first: str | None = None, counter: int = 1) -> Item:
    return {
        "publishedVersion": version,
        "publishedAt": now,
        "firstPublishedAt": first or now,
        "publishedCounter": counter,
        "publishedBy": _link("User", USER_ID),
    }


def _default_control(field_: Item) -> Item:
    widget = _DEFAULT_WIDGETS.get(field_["type"], "singleLine")
    if field_["type"] == "Array" and field_.get("items", {}).get("type") == "Symbol":
        widget = "tagEditor"
    return {"fieldId": field_["id"], "widgetId": widget, "widgetNamespace": "builtin"}


def _error(status: int, message: str | None = None, error_id: str | None = None) -> Response:
    return Response(status, error_body(status, message, error_id))


def _invalid(problem: str) -> Response:
    body = error_body(422, "Validation error", "ValidationFailed")
    body["details"] = {"errors": [{"name": "invalid", "details": problem}]}
    return Response(422, body)


def _link(link_type: str, link_id: str) -> Item:
    return {"sys": {"type": "Link", "linkType": link_type, "id": link_id}}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
