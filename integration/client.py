"""Contentful's Delivery API (CDA) as a `ContentSource`, through the official `contentful` SDK.

Retries live here, not in the SDK (its own rate-limit retry is switched off). `is_transient` is the
one table of what is retried: 429 waits what Contentful asks for (`X-Contentful-RateLimit-Reset`,
capped by `max_wait_seconds`), 5xx, timeouts and failed connections back off exponentially with
jitter, and every other 4xx fails at once. Every failure surfaces as an `integration.exceptions`
error. The SDK is blocking: callers on the event loop run these methods in a worker thread.

`retry_policy` and `call_with_retries` are that policy for any Contentful SDK call: the
Content Management API client (`integration.content_model.client`) uses them too, adding
version conflicts (409) to what it retries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import contentful
import requests
import structlog
from contentful.errors import (
    BadGatewayError,
    HTTPError,
    RateLimitExceededError,
    ServerError,
    ServiceUnavailableError,
)
from contentful_management.errors import HTTPError as ManagementHTTPError
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import WaitBaseT, wait_base

from integration.config import ContentfulSettings
from integration.exceptions import (
    ContentfulError,
    ContentfulRequestRejected,
    ContentfulUnavailable,
)
from integration.schemas import Locale, SyncPage

__all__ = [
    "ContentfulSource",
    "WaitForServerHint",
    "call_with_retries",
    "is_transient",
    "retry_policy",
    "server_wait_hint",
]

log = structlog.get_logger()

T = TypeVar("T")

# Both SDKs' HTTP errors carry `status_code` and the `requests` response.
_HTTP_ERRORS: tuple[Any, ...] = (HTTPError, ManagementHTTPError)

RATE_LIMIT_RESET_HEADER = "X-Contentful-RateLimit-Reset"
RETRY_AFTER_HEADER = "Retry-After"

_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RateLimitExceededError,  # 429
    ServerError,  # 500
    BadGatewayError,  # 502 (a hibernated space wakes up)
    ServiceUnavailableError,  # 503
    requests.ConnectionError,  # refused, reset, DNS; includes ConnectTimeout
    requests.Timeout,  # read timeout
    requests.exceptions.ChunkedEncodingError,  # connection dropped mid-body
)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: 429, any 5xx, timeouts, broken connections."""
    if isinstance(exc, _TRANSIENT_ERRORS):
        return True
    status = _status_of(exc)
    return status is not None and (status == 429 or status >= 500)


def server_wait_hint(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (`X-Contentful-RateLimit-Reset`, else `Retry-After`)."""
    if not isinstance(exc, _HTTP_ERRORS):
        return None
    headers = exc.response.headers  # requests' CaseInsensitiveDict
    for name in (RATE_LIMIT_RESET_HEADER, RETRY_AFTER_HEADER):
        seconds = _seconds(headers.get(name))
        if seconds is not None:
            return seconds
    return None


class WaitForServerHint(wait_base):
    """Wait what the last response asked for, else `fallback`; never longer than `max_wait`."""

    def __init__(self, *, max_wait: float, fallback: WaitBaseT | None = None) -> None:
        self.max_wait = max_wait
        self.fallback: WaitBaseT = fallback or wait_exponential_jitter(multiplier=0.2, max=10)

    def __call__(self, retry_state: RetryCallState) -> float:
        hint = server_wait_hint(_exception_of(retry_state))
        seconds = self.fallback(retry_state) if hint is None else hint
        return min(float(seconds), self.max_wait)


def retry_policy(
    settings: ContentfulSettings,
    *,
    wait: WaitBaseT | None = None,
    also_retry: Callable[[BaseException], bool] | None = None,
) -> Retrying:
    """The retry policy of every Contentful call: `is_transient` (plus `also_retry`), the
    server's wait hint (or `wait`), at most `settings.max_attempts` tries, the last error raised."""

    def retryable(exc: BaseException) -> bool:
        return is_transient(exc) or (also_retry is not None and also_retry(exc))

    return Retrying(
        retry=retry_if_exception(retryable),
        wait=wait if wait is not None else WaitForServerHint(max_wait=settings.max_wait_seconds),
        stop=stop_after_attempt(settings.max_attempts),
        reraise=True,
    )


def call_with_retries(retrying: Retrying, operation: str, request: Callable[[], T]) -> T:
    """Run one SDK call (or a unit of calls) under `retrying`; any failure becomes our error."""
    attempt = retrying.copy(before_sleep=_log_retry(operation))
    try:
        return attempt(lambda: _surface_rate_limit(request))
    except (HTTPError, ManagementHTTPError, requests.RequestException) as exc:
        attempts = int(attempt.statistics.get("attempt_number", 1))
        raise _failure(operation, exc, attempts=attempts) from exc
    except (KeyError, ValueError, TypeError) as exc:  # the SDK choking on the body
        raise ContentfulError(
            f"Contentful sent a malformed {operation} response ({type(exc).__name__}: {exc})"
        ) from exc


class ContentfulSource:
    """`ContentSource` over the CDA: sync pages and locales of one space environment.

    `wait` replaces the wait strategy (tests pass `wait_none()`); by default the server's hint is
    honoured and exponential jitter fills in. Safe to share between threads: each call retries
    with its own copy of the policy.
    """

    def __init__(self, settings: ContentfulSettings, *, wait: WaitBaseT | None = None) -> None:
        self._client = _build_client(settings)
        self._retrying = retry_policy(settings, wait=wait)

    @property
    def name(self) -> str:
        return "contentful"

    def fetch_sync_page(self, token: str | None) -> SyncPage:
        """`token=None` starts an initial sync; otherwise continue from a page or sync token."""
        query: dict[str, Any] = {"initial": True} if token is None else {"sync_token": token}
        page = self._call("sync", lambda: self._client.sync(dict(query)))
        return _to_sync_page(page)

    def fetch_locales(self) -> list[Locale]:
        locales = self._call("locales", self._client.locales)
        return [_to_locale(item) for item in locales]

    def _call(self, operation: str, request: Callable[[], T]) -> T:
        """Run one SDK call under the retry policy and turn any failure into our errors."""
        return call_with_retries(self._retrying, operation, request)


def _build_client(settings: ContentfulSettings) -> Any:
    if not settings.space_id or settings.access_token is None:
        raise ContentfulError(
            "Contentful is not configured: set CONTENTFUL_SPACE_ID and CONTENTFUL_ACCESS_TOKEN"
        )
    return delivery_client(settings, settings.access_token, settings.cda_url)


def delivery_client(
    settings: ContentfulSettings, token: SecretStr, base_url: str, *, raw: bool = False
) -> Any:
    """The `contentful` SDK client on `base_url` (the CDA, or the Preview API), with its own
    retries off: every call goes through our retry policy. `raw`: JSON dicts, not SDK objects."""
    assert settings.space_id is not None
    url = urlsplit(base_url)
    return contentful.Client(
        settings.space_id,
        token.get_secret_value(),
        api_url=url.netloc.rpartition("@")[2],
        https=url.scheme == "https",
        environment=settings.environment,
        content_type_cache=False,
        raw_mode=raw,
        max_rate_limit_retries=0,
        # 0 makes the SDK raise a 429 at once instead of sleeping the reset time itself first.
        max_rate_limit_wait=0,
        timeout_s=settings.timeout_seconds,
        raise_errors=True,
        application_name="microbridge",
    )


def _surface_rate_limit(request: Callable[[], T]) -> T:
    """Run one SDK call, re-raising the 429 that the SDK's retry helper can bury.

    Even with `max_rate_limit_retries=0` the SDK reads the reset header of a 429 while handling
    it; without the header (or with a non-integer one) that raises KeyError/ValueError instead.
    Both SDKs (delivery and management) do this.
    """
    try:
        return request()
    except (KeyError, ValueError) as exc:
        rate_limited = exc.__context__
        if rate_limited is not None and _status_of(rate_limited) == 429:
            raise rate_limited from None
        raise


def _to_sync_page(page: Any) -> SyncPage:
    raw = getattr(page, "raw", None)  # an SDK Array (no next URL at all) has no `raw`
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), list):
        raise ContentfulError(
            "Contentful sent a sync response with neither nextPageUrl nor nextSyncUrl"
        )
    result = SyncPage(
        items=raw["items"],
        next_page_token=_sync_token(raw.get("nextPageUrl")),
        next_sync_token=_sync_token(raw.get("nextSyncUrl")),
    )
    if not (result.next_page_token or result.next_sync_token):
        raise ContentfulError(
            "Contentful sent a sync response without a sync_token to continue from"
        )
    return result


def _sync_token(url: object) -> str | None:
    """The `sync_token` query parameter of a next URL (with or without `/environments/...`)."""
    if not isinstance(url, str) or not url:
        return None
    values = parse_qs(urlsplit(url).query).get("sync_token")
    return values[0] if values else None


def _to_locale(item: Any) -> Locale:
    """An SDK `Locale` (CDA `/locales` item) as ours; a missing or null `fallbackCode` is None."""
    fallback = item.fallback_code
    return Locale(
        code=str(item.code),
        name=str(item.name or ""),
        default=bool(item.default),
        fallback_code=str(fallback) if fallback else None,
    )


def _failure(operation: str, exc: Exception, *, attempts: int) -> ContentfulError:
    """Our error for a failed call: unavailable (transient), rejected (4xx) or plain."""
    status = _status_of(exc)
    error_id, description = _describe(exc)
    if is_transient(exc):
        return ContentfulUnavailable(
            f"Contentful {operation} request failed after {attempts} attempt(s): {description}",
            upstream_status=status,
            error_id=error_id,
        )
    if status is not None and 400 <= status < 500:
        return ContentfulRequestRejected(
            f"Contentful rejected the {operation} request: {description}",
            upstream_status=status,
            error_id=error_id,
        )
    return ContentfulError(
        f"Contentful {operation} request failed: {description}",
        upstream_status=status,
        error_id=error_id,
    )


def _describe(exc: Exception) -> tuple[str | None, str]:
    """(`sys.id`, one readable line) of a failure; never includes the access token."""
    if not isinstance(exc, _HTTP_ERRORS):
        return None, f"{type(exc).__name__}: {exc}"
    body = _json_object(exc.response)
    sys = body.get("sys")
    error_id = sys.get("id") if isinstance(sys, dict) else None
    message = body.get("message") or exc.response.reason or "no message"
    text = f"HTTP {exc.status_code}" + (f" {error_id}" if error_id else "") + f": {message}"
    if body.get("requestId"):
        text += f" (request id {body['requestId']})"
    return (str(error_id) if error_id else None), text


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _log_retry(operation: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = _exception_of(state)
        log.warning(
            "contentful.request.retry",
            operation=operation,
            attempt=state.attempt_number,
            wait=round(state.upcoming_sleep, 3),
            status=_status_of(exc),
            error=type(exc).__name__,
        )

    return before_sleep


def _exception_of(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    return outcome.exception() if outcome is not None and outcome.failed else None


def _status_of(exc: BaseException | None) -> int | None:
    return int(exc.status_code) if isinstance(exc, _HTTP_ERRORS) else None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
