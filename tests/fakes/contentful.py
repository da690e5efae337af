"""A loopback fake of Contentful's Content Delivery API (CDA), for tests that drive the real SDK.

`FakeContentful` serves `/sync`, `/locales` and `/content_types` of one space environment on
127.0.0.1 from a background thread. Content is an append-only history of raw CDA items: the
initial pages, then whatever a test `publish()`es or `delete()`s. A sync token is a position in
that history, so a delta returns the latest revision of everything changed since the token, with
`DeletedEntry`/`DeletedAsset` tombstones. Faults (`fail_next`, `delay_next`) are consumed one per
request, in order, before authentication, like a rate limiter or proxy in front of the API.

Wire shapes follow ../shared/reference/contentful: sync pages and deleted items
(`cda-sync-*.json`), error envelopes (`cda-error-responses.json`, bodies copied below), and the
`/locales` body recorded in contentful/contentful.py `fixtures/client/locales_on_environment.yaml`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from itertools import accumulate
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from tests.fakes.loopback import FakeServer, JsonHandler, LoopbackFake, Response

Item = dict[str, Any]
EntityKind = Literal["Entry", "Asset"]

CONTENT_TYPE = "application/vnd.contentful.delivery.v1+json"

# Recorded errors (cda-error-responses.json): status → (sys.id, message, requestId). The 503
# recording carries an AccessTokenInvalid body; kept as is (clients must classify by status).
_TOKEN_INVALID = "The access token you sent could not be found or is invalid."
RECORDED_ERRORS: dict[int, tuple[str, str, str]] = {
    400: (
        "InvalidQuery",
        "The query you sent was invalid. Probably a filter or ordering specification is not "
        "applicable to the type of a field.",
        "f1c-737716794",
    ),
    401: ("AccessTokenInvalid", _TOKEN_INVALID, "85f-649640521"),
    404: ("NotFound", "Invalid resource id", "77047700ec63ba7bdf3b4f3b66770004"),
    429: (
        "RateLimitExceeded",
        "You have exceeded the rate limit of the Organization this Space belongs to by making too "
        "many API requests within a short timespan. Please wait a moment before trying the "
        "request again.",
        "395-766168967",
    ),
    503: ("AccessTokenInvalid", _TOKEN_INVALID, "2c869757aa2dca0bddce49574f85e62b"),
}
_RECORDED_DETAILS = {400: {"errors": [{"name": "unknown", "path": ["some"]}]}}
# Error ids from Contentful's error reference, for statuses without a recording.
_ERROR_IDS = {403: "AccessDenied", 500: "ServerError", 502: "Hibernated"}

_ROUTE = re.compile(
    r"^/spaces/(?P<space>[^/]+)(?:/environments/(?P<env>[^/]+))?"
    r"/(?P<resource>sync|locales|content_types)/?$"
)


def build_locale(
    code: str, name: str, *, default: bool = False, fallback_code: str | None = None
) -> Item:
    """A CDA `/locales` item."""
    sys_id = uuid.uuid5(uuid.NAMESPACE_URL, code).hex[:22]
    return {
        "code": code,
        "name": name,
        "default": default,
        "fallbackCode": fallback_code,
        "sys": {"id": sys_id, "type": "Locale", "version": 1},
    }


DEFAULT_LOCALES: tuple[Item, ...] = (
    build_locale("en-US", "English (United States)", default=True),
    build_locale("de-DE", "German (Germany)", fallback_code="en-US"),
)


def build_entry(
    entry_id: str, content_type: str, fields: Mapping[str, Mapping[str, Any]], **sys: Any
) -> Item:
    """A sync-format entry (`fields` keep every locale: `{field: {locale: value}}`)."""
    link = {"sys": {"type": "Link", "linkType": "ContentType", "id": content_type}}
    return {
        "sys": {"id": entry_id, "type": "Entry", "contentType": link, **sys},
        "fields": {name: dict(values) for name, values in fields.items()},
    }


def error_body(status: int, message: str | None = None, error_id: str | None = None) -> Item:
    """A Contentful error envelope: the recorded one for `status`, or one built alike."""
    http_status = HTTPStatus(status)
    recorded = RECORDED_ERRORS.get(status)
    default_id, default_message, request_id = recorded or (
        _ERROR_IDS.get(status, http_status.phrase.replace(" ", "")),
        http_status.description,
        uuid.uuid4().hex,
    )
    body: Item = {
        "sys": {"type": "Error", "id": error_id or default_id},
        "message": message or default_message,
    }
    if message is None and status in _RECORDED_DETAILS:
        body["details"] = copy.deepcopy(_RECORDED_DETAILS[status])
    body["requestId"] = request_id
    return body


@dataclass(frozen=True, slots=True)
class _Fault:
    delay: float = 0.0
    response: Response | None = None


@dataclass(frozen=True, slots=True)
class _Cursor:
    """Where a sync continues: changes in history[since:upto], `offset` of them already sent."""

    since: int
    upto: int
    offset: int = 0
    initial: bool = False


class FakeContentful(LoopbackFake):
    """Contentful's CDA for one space environment, served on 127.0.0.1 (a context manager).

    `pages` are the initial sync's pages (lists of raw CDA items, served with those boundaries);
    `page_size` instead splits every sync result into pages of that many items. `locales` and
    `content_types` are raw CDA items. With `environment_in_next_urls=False` the next URLs omit
    `/environments/<env>`, as older recordings do.
    """

    def __init__(
        self,
        space_id: str = "cfexampleapi",
        environment: str = "master",
        token: str = "b4c0n73n7fu1",
        *,
        pages: Sequence[Sequence[Mapping[str, Any]]] = (),
        page_size: int | None = None,
        locales: Iterable[Mapping[str, Any]] = DEFAULT_LOCALES,
        content_types: Iterable[Mapping[str, Any]] = (),
        environment_in_next_urls: bool = True,
    ) -> None:
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.space_id = space_id
        self.environment = environment
        self.token = token
        self.page_size = page_size
        self.environment_in_next_urls = environment_in_next_urls
        self.locales = [copy.deepcopy(dict(x)) for x in locales]
        self.content_types = [copy.deepcopy(dict(x)) for x in content_types]
        self._history: list[Item] = [copy.deepcopy(dict(i)) for page in pages for i in page]
        self._initial_breaks = list(accumulate(len(page) for page in pages))
        self._faults: deque[_Fault] = deque()
        self._requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @classmethod
    def from_sync_file(cls, path: Path | str, **options: Any) -> FakeContentful:
        """A fake whose initial sync is the body of a recorded sync response (one page).

        The space and environment come from the items' `sys` links unless given in `options`.
        """
        items: list[Item] = json.loads(Path(path).read_text(encoding="utf-8"))["items"]
        sys0 = items[0]["sys"] if items else {}
        options.setdefault("space_id", _link_id(sys0.get("space")) or "cfexampleapi")
        options.setdefault("environment", _link_id(sys0.get("environment")) or "master")
        return cls(pages=[items], **options)

    # -- lifecycle ------------------------------------------------------------------------

    def _classes(self) -> tuple[type[FakeServer], type[BaseHTTPRequestHandler]]:
        return _Server, _Handler

    def _release(self) -> None:
        self._stopping.set()

    # -- content --------------------------------------------------------------------------

    def publish(self, *items: Mapping[str, Any]) -> None:
        """Publish raw CDA entries/assets, as Contentful does: `revision` goes up by one (or to
        the item's own, when higher), `updatedAt` is now, `createdAt` is kept from the first."""
        with self._lock:
            for item in items:
                self._history.append(self._stamped(item))

    def delete(self, *entity_ids: str, kind: EntityKind | None = None) -> None:
        """Unpublish/delete entries or assets: deltas then carry `DeletedEntry`/`DeletedAsset`.

        `kind` ("Entry" or "Asset") is needed when an entry and an asset share the id.
        """
        with self._lock:
            for entity_id in entity_ids:
                self._history.append(self._tombstone(kind or self._kind_of(entity_id), entity_id))

    # -- faults and inspection ------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `count` requests with `status` (recorded body unless `body`)."""
        response = Response(status, error_body(status) if body is None else body, headers or {})
        self._add_faults(_Fault(response=response), count)

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Hold the next `count` requests for `seconds` before answering them normally."""
        self._add_faults(_Fault(delay=seconds), count)

    def clear_faults(self) -> None:
        """Drop every fault still queued: requests are answered normally from now on."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        """Every request received, in order: (path, query parameters)."""
        with self._lock:
            return list(self._requests)

    # -- serving (called from the server's threads) ---------------------------------------

    def handle(self, path: str, query: dict[str, str], headers: Mapping[str, str]) -> Response:
        with self._lock:
            self._requests.append((path, dict(query)))
            fault = self._faults.popleft() if self._faults else _Fault()
        if fault.delay:
            self._stopping.wait(fault.delay)
        if fault.response is not None:
            return fault.response
        if not self._authorized(query, headers):
            return _error(401)
        match = _ROUTE.match(path)
        if match is None or match["space"] != self.space_id:
            return _error(404)
        if match["env"] not in (None, self.environment):
            return _error(404)
        return self._serve(match["resource"], query)

    def _serve(self, resource: str, query: dict[str, str]) -> Response:
        if resource == "locales":
            return Response(200, _array(self.locales, limit=1000))
        if resource == "content_types":
            return Response(200, _array(self.content_types, limit=100))
        return self._sync(query)

    def _authorized(self, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        bearer = headers.get("Authorization", "")
        return bearer == f"Bearer {self.token}" or query.get("access_token") == self.token

    def _sync(self, query: dict[str, str]) -> Response:
        params = {k: v for k, v in query.items() if k != "access_token"}
        with self._lock:
            if "sync_token" in params:
                if len(params) > 1:
                    return _error(400, _SYNC_TOKEN_ALONE, error_id="BadRequest")
                cursor = self._cursor_of(params["sync_token"])
            elif params.get("initial") == "true":
                cursor = _Cursor(since=0, upto=len(self._history), initial=True)
            else:
                return _error(400, "Send either initial=true or a sync_token.", "BadRequest")
            if cursor is None:
                return _error(400, "The sync token you sent is invalid.", error_id="BadRequest")
            return Response(200, self._sync_page(cursor))

    def _sync_page(self, cursor: _Cursor) -> Item:
        results = self._changes(cursor)
        end = self._page_end(cursor, len(results))
        body: Item = {"sys": {"type": "Array"}, "items": results[cursor.offset : end]}
        if end < len(results):
            following = _Cursor(cursor.since, cursor.upto, end, cursor.initial)
            body["nextPageUrl"] = self._next_url(following)
        else:
            body["nextSyncUrl"] = self._next_url(_Cursor(since=cursor.upto, upto=-1))
        return body

    def _changes(self, cursor: _Cursor) -> list[Item]:
        """Latest state of each entity changed in history[since:upto], oldest change first;
        an initial sync leaves out what is deleted."""
        latest: dict[tuple[str, str], Item] = {}
        for item in self._history[cursor.since : cursor.upto]:
            key = _entity_key(item)
            latest.pop(key, None)
            latest[key] = item
        items = list(latest.values())
        if cursor.initial:
            items = [i for i in items if not i["sys"]["type"].startswith("Deleted")]
        return copy.deepcopy(items)

    def _page_end(self, cursor: _Cursor, total: int) -> int:
        if self.page_size is not None:
            return min(cursor.offset + self.page_size, total)
        if cursor.initial:
            return next((b for b in self._initial_breaks if cursor.offset < b < total), total)
        return total

    def _next_url(self, cursor: _Cursor) -> str:
        env = f"/environments/{self.environment}" if self.environment_in_next_urls else ""
        token = _encode(cursor)
        return f"{self.url}/spaces/{self.space_id}{env}/sync?{urlencode({'sync_token': token})}"

    def _cursor_of(self, token: str) -> _Cursor | None:
        """The cursor a token stands for; None for anything this fake did not hand out."""
        cursor = _decode(token)
        if cursor is None or not 0 <= cursor.since <= len(self._history):
            return None
        if cursor.upto == -1:  # a sync token: everything up to now
            return _Cursor(since=cursor.since, upto=len(self._history))
        if not cursor.since <= cursor.upto <= len(self._history) or cursor.offset < 0:
            return None
        return cursor

    def _add_faults(self, fault: _Fault, count: int) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    # -- history --------------------------------------------------------------------------

    def _latest(self, kind: str, entity_id: str) -> Item | None:
        key = (kind, entity_id)
        return next((i for i in reversed(self._history) if _entity_key(i) == key), None)

    def _kind_of(self, entity_id: str) -> EntityKind:
        kinds = {kind for kind, id_ in map(_entity_key, self._history) if id_ == entity_id}
        if len(kinds) != 1:
            raise KeyError(f"{entity_id!r} names {len(kinds)} kinds of entity: pass kind=")
        return "Asset" if kinds == {"Asset"} else "Entry"

    def _stamped(self, item: Mapping[str, Any]) -> Item:
        stamped = copy.deepcopy(dict(item))
        sys_ = stamped.setdefault("sys", {})
        if sys_.get("type") not in ("Entry", "Asset") or not sys_.get("id"):
            raise ValueError("publish() takes CDA entries or assets with sys.type and sys.id")
        previous = self._latest(sys_["type"], sys_["id"])
        previous_sys = previous["sys"] if previous else {}
        now = _now()
        sys_["revision"] = max(
            int(sys_.get("revision", 0)), int(previous_sys.get("revision", 0)) + 1
        )
        sys_["createdAt"] = previous_sys.get("createdAt") or sys_.get("createdAt") or now
        sys_["updatedAt"] = now
        sys_.setdefault("space", _link("Space", self.space_id))
        return stamped

    def _tombstone(self, kind: EntityKind, entity_id: str) -> Item:
        """A `DeletedEntry`/`DeletedAsset` shaped like cda-sync-page-deleted-items.json."""
        previous = self._latest(kind, entity_id)
        if previous is None or previous["sys"]["type"].startswith("Deleted"):
            raise KeyError(f"no published {kind} {entity_id!r}")
        old = previous["sys"]
        now = _now()
        sys_: Item = {"space": old.get("space") or _link("Space", self.space_id)}
        if "environment" in old:
            sys_["environment"] = old["environment"]
        sys_ |= {
            "id": entity_id,
            "type": f"Deleted{old['type']}",
            "createdAt": old.get("createdAt", now),
        }
        sys_ |= {"updatedAt": now, "deletedAt": now, "revision": old.get("revision", 1)}
        return {"sys": sys_}


_SYNC_TOKEN_ALONE = (
    "When passing a sync token you can not pass any other parameters. If you want to sync only "
    'a specific type or content_type start a new sync with "initial".'
)


class _Server(FakeServer):
    fake: FakeContentful


class _Handler(JsonHandler):
    def base_headers(self) -> dict[str, str]:
        return {"Content-Type": CONTENT_TYPE, "X-Contentful-Request-Id": uuid.uuid4().hex}


def _encode(cursor: _Cursor) -> str:
    raw = json.dumps([cursor.since, cursor.upto, cursor.offset, cursor.initial]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str) -> _Cursor | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        since, upto, offset, initial = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        return None
    if not all(type(n) is int for n in (since, upto, offset)) or type(initial) is not bool:
        return None
    return _Cursor(since, upto, offset, initial)


def _entity_key(item: Mapping[str, Any]) -> tuple[str, str]:
    kind = str(item["sys"]["type"]).removeprefix("Deleted")
    return kind, str(item["sys"]["id"])


def _array(items: list[Item], *, limit: int) -> Item:
    return {
        "sys": {"type": "Array"},
        "total": len(items),
        "skip": 0,
        "limit": limit,
        "items": copy.deepcopy(items),
    }


def _error(status: int, message: str | None = None, error_id: str | None = None) -> Response:
    return Response(status, error_body(status, message, error_id))


def _link(link_type: str, link_id: str) -> Item:
    return {"sys": {"type": "Link", "linkType": link_type, "id": link_id}}


def _link_id(link: Any) -> str | None:
    return link["sys"]["id"] if isinstance(link, dict) else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
