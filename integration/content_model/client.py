"""Contentful's Content Management API (CMA), through the official `contentful-management` SDK.

Only what `model apply` needs: read a content type, its editor interface and how many entries
hold a value in a field; create, update and activate content types; update editor interfaces.
The methods make one request each and never retry; `run` executes a unit of them under the
sync's retry policy (`integration.client.retry_policy`), adding version conflicts (409) to what
it retries, so a unit that reads before it writes re-reads after a conflict. Every request has
the sync's timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import contentful_management
from contentful_management.errors import NotFoundError, VersionMismatchError
from tenacity.wait import WaitBaseT

from integration.client import call_with_retries, retry_policy
from integration.config import ContentfulSettings
from integration.content_model.exceptions import ManagementNotConfigured

__all__ = ["ManagementClient", "is_active", "is_version_conflict"]

T = TypeVar("T")


def is_version_conflict(exc: BaseException) -> bool:
    """A 409: somebody else wrote the resource since we read it."""
    return isinstance(exc, VersionMismatchError)


class _TimedClient(contentful_management.Client):  # type: ignore[misc]
    """The SDK's client with a timeout on every request (it has no setting for one)."""

    def __init__(self, *args: Any, timeout: float, **kwargs: Any) -> None:
        self._timeout = timeout
        super().__init__(*args, **kwargs)

    def _http_request(self, method: str, url: str, request_kwargs: Any = None) -> Any:
        kwargs = dict(request_kwargs or {})
        kwargs.setdefault("timeout", self._timeout)
        return super()._http_request(method, url, kwargs)


class ManagementClient:
    """The CMA for one space environment. `wait` replaces the retry wait (tests)."""

    def __init__(
        self,
        settings: ContentfulSettings,
        *,
        space_id: str | None = None,
        environment: str | None = None,
        wait: WaitBaseT | None = None,
    ) -> None:
        self.space_id = space_id or settings.space_id or ""
        self.environment = environment or settings.environment
        token = settings.management_token
        if token is None:
            raise ManagementNotConfigured(
                "model apply needs a Content Management API token: set CONTENTFUL_MANAGEMENT_TOKEN"
            )
        if not self.space_id:
            raise ManagementNotConfigured(
                "model apply needs a space: set CONTENTFUL_SPACE_ID or pass --space-id"
            )
        self._sdk = _build_sdk(settings, token.get_secret_value())
        self._retrying = retry_policy(settings, wait=wait, also_retry=is_version_conflict)

    def run(self, operation: str, unit: Callable[[], T]) -> T:
        """Run `unit` (requests of this client) under the retry policy, 409 included."""
        return call_with_retries(self._retrying, operation, unit)

    # -- reads ---------------------------------------------------------------------------

    def content_type(self, type_id: str) -> Any | None:
        """The SDK's `ContentType` (its latest version, active or not), None when absent."""
        try:
            return self._content_types().find(type_id)
        except NotFoundError:
            return None

    def editor_interface(self, type_id: str) -> Any | None:
        """The SDK's `EditorInterface` of a content type; None before its first activation."""
        proxy = self._sdk.editor_interfaces(self.space_id, self.environment, type_id)
        try:
            return proxy.default()
        except NotFoundError:
            return None

    def entries_with_value(self, type_id: str, field_id: str) -> int:
        """How many entries of the type (drafts and archived ones too) hold a value there."""
        query = {"content_type": type_id, f"fields.{field_id}[exists]": "true", "limit": 1}
        entries = self._sdk.entries(self.space_id, self.environment).all(query)
        return int(entries.total)

    # -- writes --------------------------------------------------------------------------

    def create_content_type(self, type_id: str, body: Mapping[str, Any]) -> Any:
        return self._content_types().create(type_id, dict(body))

    def update_content_type(self, content_type: Any, body: Mapping[str, Any]) -> Any:
        """Write a new version of the content type (`X-Contentful-Version`: the one we read)."""
        return content_type.update(dict(body))

    def activate(self, content_type: Any) -> Any:
        """Publish the content type's latest version, so entries and the delivery API use it."""
        return content_type.publish()

    def update_editor_interface(self, editor: Any, controls: Sequence[Mapping[str, Any]]) -> Any:
        """Replace the controls; the editor interface's other parts (sidebar, ...) are kept."""
        raw = {k: v for k, v in editor.raw.items() if k != "sys"}
        return editor.update({**raw, "controls": [dict(c) for c in controls]})

    def _content_types(self) -> Any:
        return self._sdk.content_types(self.space_id, self.environment)


def is_active(content_type: Any) -> bool:
    """Whether the content type's latest version is the active (published) one."""
    sys = content_type.sys
    published = sys.get("published_version")
    return published is not None and int(sys["version"]) == int(published) + 1


def _build_sdk(settings: ContentfulSettings, token: str) -> Any:
    url = urlsplit(settings.management_url)
    return _TimedClient(
        token,
        timeout=settings.timeout_seconds,
        api_url=url.netloc.rpartition("@")[2],
        https=url.scheme == "https",
        raise_errors=True,
        # 0 and 0: the SDK raises a 429 at once; our retry policy waits the reset time.
        max_rate_limit_retries=0,
        max_rate_limit_wait=0,
        application_name="microbridge",
    )
