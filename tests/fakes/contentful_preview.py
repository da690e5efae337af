"""A loopback fake of Contentful's Content Preview API (CPA), for tests that drive the real SDK.

The Preview API answers like the Delivery API but with the latest draft of every entry and
asset, and it has no Sync API. `FakeContentfulPreview` serves `/entries`, `/assets` and
`/locales` of one space environment with `locale=*` (fields keep every locale), `limit`/`skip`
paging and `include` (assets and entries linked from a page's items, under `includes`), in the
collection shape of ../shared/reference/contentful/optimization-cda-entries-optimized-entry.json.
Editors' work is `save()` (a new draft of an entry or asset) and `discard()`; faults
(`fail_next`) and the request log work as in `tests.fakes.contentful`.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.contentful import CONTENT_TYPE, DEFAULT_LOCALES, error_body
from tests.fakes.loopback import FakeServer, JsonHandler, LoopbackFake, Response

Item = dict[str, Any]

_ROUTE = re.compile(
    r"^/spaces/(?P<space>[^/]+)(?:/environments/(?P<env>[^/]+))?"
    r"/(?P<resource>entries|assets|locales)/?$"
)
MAX_LIMIT = 1000


class FakeContentfulPreview(LoopbackFake):
    """The Preview API of one space environment on 127.0.0.1 (a context manager)."""

    def __init__(
        self,
        items: Iterable[Mapping[str, Any]] = (),
        *,
        space_id: str = "cfexampleapi",
        environment: str = "master",
        token: str = "preview-token",
        locales: Iterable[Mapping[str, Any]] = DEFAULT_LOCALES,
    ) -> None:
        self.space_id = space_id
        self.environment = environment
        self.token = token
        self.locales = [copy.deepcopy(dict(x)) for x in locales]
        self._items: dict[tuple[str, str], Item] = {}
        self._faults: deque[Response] = deque()
        self._requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self.save(*items)

    def _classes(self) -> tuple[type[FakeServer], type[BaseHTTPRequestHandler]]:
        return _Server, _Handler

    # -- content --------------------------------------------------------------------------

    def save(self, *items: Mapping[str, Any]) -> None:
        """Save drafts of entries or assets (sync-format items): `sys.version` goes up."""
        with self._lock:
            for item in items:
                draft = copy.deepcopy(dict(item))
                sys_ = draft["sys"]
                key = (sys_["type"], sys_["id"])
                previous = self._items.get(key)
                sys_["version"] = (previous["sys"].get("version", 0) if previous else 0) + 1
                sys_["updatedAt"] = _now()
                self._items[key] = draft

    def discard(self, entity_id: str, kind: str = "Entry") -> None:
        with self._lock:
            del self._items[(kind, entity_id)]

    def fail_next(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._faults.extend([Response(status, error_body(status))] * count)

    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            return list(self._requests)

    # -- serving ----------------------------------------------------------------------------

    def handle(self, path: str, query: dict[str, str], headers: Mapping[str, str]) -> Response:
        with self._lock:
            self._requests.append((path, dict(query)))
            if self._faults:
                return self._faults.popleft()
            if headers.get("Authorization", "") != f"Bearer {self.token}":
                return Response(401, error_body(401))
            match = _ROUTE.match(path)
            if match is None or match["space"] != self.space_id:
                return Response(404, error_body(404))
            if match["env"] not in (None, self.environment):
                return Response(404, error_body(404))
            if match["resource"] == "locales":
                return Response(200, _collection(self.locales, 0, MAX_LIMIT, len(self.locales)))
            return self._collection(match["resource"], query)

    def _collection(self, resource: str, query: dict[str, str]) -> Response:
        if query.get("locale") != "*":
            return Response(400, error_body(400, "this fake serves locale=* only"))
        try:
            limit = int(query.get("limit", "100"))
            skip = int(query.get("skip", "0"))
            include = int(query.get("include", "1" if resource == "entries" else "0"))
        except ValueError:
            return Response(400, error_body(400))
        if not (0 < limit <= MAX_LIMIT and skip >= 0 and 0 <= include <= 10):
            return Response(400, error_body(400))
        kind = "Entry" if resource == "entries" else "Asset"
        every = sorted((i for (k, _), i in self._items.items() if k == kind), key=_sys_id)
        page = every[skip : skip + limit]
        body = _collection(page, skip, limit, len(every))
        if include and kind == "Entry":
            body["includes"] = self._includes(page)
        return Response(200, body)

    def _includes(self, page: list[Item]) -> dict[str, list[Item]]:
        """What the page's items link (one level), except what the page holds itself."""
        on_page = {("Entry", _sys_id(i)) for i in page}
        linked: dict[tuple[str, str], Item] = {}
        for item in page:
            for key in _links(item.get("fields") or {}):
                if key not in on_page and key in self._items:
                    linked[key] = self._items[key]
        included: dict[str, list[Item]] = {"Entry": [], "Asset": []}
        for (kind, _), item in sorted(linked.items()):
            included[kind].append(copy.deepcopy(item))
        return included


class _Server(FakeServer):
    fake: FakeContentfulPreview


class _Handler(JsonHandler):
    def base_headers(self) -> dict[str, str]:
        return {"Content-Type": CONTENT_TYPE, "X-Contentful-Request-Id": uuid.uuid4().hex}


def _collection(items: list[Item], skip: int, limit: int, total: int) -> Item:
    return {
        "sys": {"type": "Array"},
        "total": total,
        "skip": skip,
        "limit": limit,
        "items": copy.deepcopy(items),
    }


def _links(value: Any) -> Iterable[tuple[str, str]]:
    if isinstance(value, list):
        for element in value:
            yield from _links(element)
    elif isinstance(value, dict):
        sys_ = value.get("sys")
        if isinstance(sys_, dict) and sys_.get("type") == "Link":
            yield str(sys_.get("linkType")), str(sys_.get("id"))
            return
        for element in value.values():
            yield from _links(element)


def _sys_id(item: Mapping[str, Any]) -> str:
    return str(item["sys"]["id"])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
