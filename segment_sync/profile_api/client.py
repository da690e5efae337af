"""Segment's Profile API: one user's traits and audiences, with bounded, hint-aware retries.

`GET {SEGMENT_PROFILE_URL}/v1/spaces/<space>/collections/users/profiles/user_id:<id>/traits`,
basic auth with the access token as the user name and an empty password (segment-docs
`src/unify/profile-api.md`). Two reads per user: all traits (`limit=200`, following the
`cursor.next` pages up to `profile_max_pages`) and `class=audience`, whose `true` entries are
the user's audiences. Audience flags are left out of the traits, as the webhook does.

`is_transient` is the one table of what is retried: 429 (waiting what `Retry-After` asks for),
5xx, timeouts and failed connections. 404 means "no such profile" (`fetch` returns None) and
every other 4xx fails at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from segment_sync.exceptions import SegmentSyncError
from segment_sync.webhook_config import SegmentWebhookSettings

__all__ = [
    "PagedTraits",
    "ProfileApiClient",
    "ProfileApiError",
    "ProfileApiRejected",
    "ProfileApiUnavailable",
    "PulledProfile",
    "build_http_client",
    "is_transient",
    "retry_after_seconds",
]

log = structlog.get_logger()

PAGE_LIMIT = 200  # the largest page the traits endpoint serves


class ProfileApiError(SegmentSyncError):
    """Base of Profile API failures."""

    status_code = 502


class ProfileApiUnavailable(ProfileApiError):
    """429, 5xx, a timeout or a broken connection: worth another attempt."""

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ProfileApiRejected(ProfileApiError):
    """A 4xx other than 404 and 429 (bad token, bad request): retrying cannot help."""


@dataclass(frozen=True, slots=True)
class PulledProfile:
    traits: Mapping[str, Any]
    audiences: frozenset[str]


@dataclass(frozen=True, slots=True)
class PagedTraits:
    traits: dict[str, Any]
    pages: int


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ProfileApiUnavailable)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def build_http_client(settings: SegmentWebhookSettings) -> httpx.AsyncClient:
    """The one pooled client of the process (built in the lifespan, closed on shutdown)."""
    assert settings.profile_token is not None
    timeout = settings.profile_timeout_seconds
    return httpx.AsyncClient(
        base_url=settings.profile_url,
        auth=httpx.BasicAuth(settings.profile_token.get_secret_value(), ""),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=httpx.Limits(max_connections=settings.profile_concurrency * 2),
        headers={"accept": "application/json", "user-agent": "microbridge"},
    )


class _WaitForHint:
    """Wait what the server asked for (`Retry-After`), else back off exponentially."""

    def __init__(self, settings: SegmentWebhookSettings) -> None:
        self._fallback = wait_exponential_jitter(
            multiplier=settings.profile_backoff_seconds,
            max=settings.profile_max_wait_seconds,
            jitter=settings.profile_backoff_seconds,
        )

    def __call__(self, state: RetryCallState) -> float:
        hint = _hint(state)
        return hint if hint is not None else self._fallback(state)


class _StopWhenHintTooLong(stop_base):
    """Give up when the server asks for a longer wait than we are willing to spend."""

    def __init__(self, max_wait: float) -> None:
        self._max_wait = max_wait

    def __call__(self, retry_state: RetryCallState) -> bool:
        hint = _hint(retry_state)
        return hint is not None and hint > self._max_wait


def _hint(state: RetryCallState) -> float | None:
    exc = state.outcome.exception() if state.outcome else None
    return exc.retry_after if isinstance(exc, ProfileApiUnavailable) else None


class ProfileApiClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: SegmentWebhookSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        assert settings.profile_space_id is not None
        self._http = http
        self._settings = settings
        self._space = settings.profile_space_id
        self._sleep = sleep

    async def fetch(self, user_id: str) -> PulledProfile | None:
        """Traits and audiences of one user; None when the Profile API has no such profile."""
        everything = await self.traits(user_id)
        if everything is None:
            return None
        flags = await self.traits(user_id, audience_class=True)
        flags = flags or PagedTraits({}, 0)
        audiences = frozenset(k for k, v in flags.traits.items() if v is True)
        traits = {k: v for k, v in everything.traits.items() if k not in flags.traits}
        return PulledProfile(traits=traits, audiences=audiences)

    async def traits(self, user_id: str, *, audience_class: bool = False) -> PagedTraits | None:
        """Every page of `/traits` (or of `class=audience`); None on 404."""
        path = (
            f"/v1/spaces/{quote(self._space, safe='')}/collections/users/profiles/"
            f"user_id:{quote(user_id, safe='')}/traits"
        )
        params: dict[str, str] = {"limit": str(PAGE_LIMIT)}
        if audience_class:
            params["class"] = "audience"
        traits: dict[str, Any] = {}
        for page in range(1, self._settings.profile_max_pages + 1):
            body = await self._get(path, params)
            if body is None:
                return None
            traits.update(_mapping(body.get("traits")))
            cursor = _mapping(body.get("cursor"))
            following = cursor.get("next")
            if not cursor.get("has_more") or not isinstance(following, str) or not following:
                return PagedTraits(traits, page)
            params = {**params, "next": following}
        log.warning("segment.profile_api.pages_truncated", pages=self._settings.profile_max_pages)
        return PagedTraits(traits, self._settings.profile_max_pages)

    async def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any] | None:
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self._settings.profile_max_attempts)
            | _StopWhenHintTooLong(self._settings.profile_max_wait_seconds),
            wait=_WaitForHint(self._settings),
            sleep=self._sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        result: dict[str, Any] | None = await retrying(self._get_once, path, params)
        return result

    async def _get_once(self, path: str, params: Mapping[str, str]) -> dict[str, Any] | None:
        try:
            response = await self._http.get(path, params=params)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise ProfileApiUnavailable(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 404:
            return None
        if status == 429 or status >= 500:
            raise ProfileApiUnavailable(
                _describe(response),
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status >= 400:
            raise ProfileApiRejected(_describe(response))
        try:
            body = response.json()
        except ValueError as exc:
            raise ProfileApiUnavailable(f"{status}: the body is not JSON") from exc
        if not isinstance(body, dict):
            raise ProfileApiUnavailable(f"{status}: the body is not a JSON object")
        return body


def _describe(response: httpx.Response) -> str:
    """`<status> <code>: <message>` from Segment's error body, without echoing anything else."""
    try:
        error = _mapping(_mapping(response.json()).get("error"))
    except ValueError:
        error = {}
    code, message = error.get("code"), error.get("message")
    if isinstance(code, str) and isinstance(message, str):
        return f"{response.status_code} {code}: {message[:200]}"
    return f"{response.status_code} {response.reason_phrase}"


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.info(
        "segment.profile_api.retry",
        attempt=state.attempt_number,
        wait_seconds=round(state.next_action.sleep, 3) if state.next_action else None,
        cause=str(exc),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
