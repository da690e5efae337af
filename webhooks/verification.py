"""Webhook signature checks for Contentful and Segment.

Pure functions over the raw request: no I/O, no global state, an injectable clock, and
constant-time comparison. Each failed check raises its own `WebhookError` subclass.

Contentful (request verification, as in contentful/node-apps-toolkit `src/requests`):
    canonical = method \\n normalized_path \\n signed_headers \\n body
    signed_headers = ";".join(f"{name}:{value}") over the signed headers, names lowercased,
        names and values trimmed, sorted by name; always includes `x-contentful-signed-headers`
        (the sorted, comma-joined list of names) and `x-contentful-timestamp` (ms since epoch)
    x-contentful-signature = hex(HMAC-SHA256(secret, canonical))

Segment Webhooks (classic and Actions):
    X-Signature = hex(HMAC-SHA1(shared secret, raw body))
    A batched Actions request signs only its first event (see `verify_segment_any`).
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from webhooks.exceptions import (
    SignatureExpired,
    SignatureInvalid,
    SignatureMalformed,
    SignatureMissing,
)

CONTENTFUL_SIGNATURE = "x-contentful-signature"
CONTENTFUL_SIGNED_HEADERS = "x-contentful-signed-headers"
CONTENTFUL_TIMESTAMP = "x-contentful-timestamp"
SEGMENT_SIGNATURE = "X-Signature"
DEFAULT_TTL_SECONDS = 30.0

_ALWAYS_SIGNED = frozenset({CONTENTFUL_SIGNED_HEADERS, CONTENTFUL_TIMESTAMP})
# Characters Node's `querystring.escape` and `encodeURI` leave unescaped (besides A-Z a-z 0-9).
_QUERYSTRING_SAFE = "-_.!~*'()"
_ENCODE_URI_SAFE = ";,/?:@&=+$-_.!~*'()#"
# What JavaScript's String.prototype.trim() removes.
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SHA1_HEX = re.compile(r"[0-9a-fA-F]{40}")
_TIMESTAMP_MS = re.compile(r"[0-9]{1,15}")
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_JSON = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class _ContentfulMetadata:
    """The three signature headers of a Contentful request, parsed."""

    signature: str
    signed_names: frozenset[str]
    timestamp_ms: int


# --- shared helpers -------------------------------------------------------------------------


def _usable_secrets(secrets: Sequence[str]) -> list[str]:
    """Drop empty secrets; refuse a bare string (it would iterate characters) or none at all."""
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of strings, not a single string")
    usable = [secret for secret in secrets if secret]
    if not usable:
        raise ValueError("no webhook signing secret configured")
    return usable


def _hmac_hex(algorithm: str, secret: str, message: bytes) -> str:
    """Lowercase hex HMAC of `message` keyed with the UTF-8 bytes of `secret`."""
    return hmac.digest(secret.encode("utf-8"), message, algorithm).hex()


def _matches_any(algorithm: str, secrets: Sequence[str], message: bytes, signature: str) -> bool:
    """True when `signature` (lowercase hex) is the HMAC of `message` under any secret."""
    return any(
        hmac.compare_digest(_hmac_hex(algorithm, secret, message), signature) for secret in secrets
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- Contentful: canonical request ----------------------------------------------------------


def normalize_contentful_path(path: str) -> str:
    """Normalize a request target exactly as node-apps-toolkit's `getNormalizedEncodedURI`.

    The query (only the text between the first and second `?`, as JavaScript's
    `split('?')` destructuring keeps it) is escaped like `querystring.escape`, then the whole
    target is escaped like `encodeURI`, so the query ends up double-encoded.
    """
    parts = path.split("?")
    pathname, search = parts[0], parts[1] if len(parts) > 1 else ""
    try:
        escaped_search = quote(search, safe=_QUERYSTRING_SAFE)
        target = f"{pathname}?{escaped_search}" if escaped_search else pathname
        return quote(target, safe=_ENCODE_URI_SAFE)
    except UnicodeEncodeError as exc:
        raise SignatureMalformed("request path is not valid Unicode") from exc


def _normalize_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lowercase and trim names, trim values (the toolkit's `normalizeHeaders`)."""
    return {
        name.lower().strip(_JS_WHITESPACE): value.strip(_JS_WHITESPACE)
        for name, value in headers.items()
    }


def _add_signing_headers(headers: Mapping[str, str], timestamp_ms: int) -> dict[str, str]:
    """Set the timestamp and the sorted signed-headers list, which always names both."""
    names = sorted({*headers, *_ALWAYS_SIGNED})
    return {
        **headers,
        CONTENTFUL_TIMESTAMP: str(timestamp_ms),
        CONTENTFUL_SIGNED_HEADERS: ",".join(names),
    }


def _canonical(method: str, path: str, signed: Mapping[str, str], body: bytes) -> bytes:
    """The bytes Contentful signs: method, path, `name:value;...`, body joined by newlines."""
    header_line = ";".join(f"{name}:{value}" for name, value in sorted(signed.items()))
    head = "\n".join((method, normalize_contentful_path(path), header_line, ""))
    try:
        return head.encode("utf-8") + body
    except UnicodeEncodeError as exc:
        raise SignatureMalformed("request method or headers are not valid Unicode") from exc


def canonical_contentful_request(
    *, method: str, path: str, headers: Mapping[str, str], body: bytes, timestamp_ms: int
) -> bytes:
    """The canonical request `sign_contentful` signs when all of `headers` are signed."""
    signed = _add_signing_headers(_normalize_headers(headers), timestamp_ms)
    return _canonical(method, path, signed, body)


def sign_contentful(
    *,
    secret: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    timestamp_ms: int,
) -> dict[str, str]:
    """Sign a request the way Contentful does, signing every header in `headers`.

    Returns the three `x-contentful-*` headers to add to the request.
    """
    if timestamp_ms < 0:
        raise ValueError("timestamp_ms must not be negative")
    signed = _add_signing_headers(_normalize_headers(headers), timestamp_ms)
    return {
        CONTENTFUL_SIGNATURE: _hmac_hex("sha256", secret, _canonical(method, path, signed, body)),
        CONTENTFUL_SIGNED_HEADERS: signed[CONTENTFUL_SIGNED_HEADERS],
        CONTENTFUL_TIMESTAMP: signed[CONTENTFUL_TIMESTAMP],
    }


# --- Contentful: verification ---------------------------------------------------------------


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "")
    if not value:
        raise SignatureMissing(f"missing {name} header")
    return value


def _parse_signature(value: str) -> str:
    if not _SHA256_HEX.fullmatch(value):
        raise SignatureMalformed(f"{CONTENTFUL_SIGNATURE} is not a 64-character hex digest")
    return value.lower()


def _parse_signed_names(value: str) -> frozenset[str]:
    names = {name.strip(_JS_WHITESPACE).lower() for name in value.split(",")} - {""}
    missing = _ALWAYS_SIGNED - names
    if missing:
        raise SignatureMalformed(
            f"{CONTENTFUL_SIGNED_HEADERS} does not list {', '.join(sorted(missing))}"
        )
    return frozenset(names)


def _parse_timestamp(value: str) -> int:
    if not _TIMESTAMP_MS.fullmatch(value):
        raise SignatureMalformed(
            f"{CONTENTFUL_TIMESTAMP} is not an integer count of milliseconds since the epoch"
        )
    return int(value)


def _read_metadata(headers: Mapping[str, str]) -> _ContentfulMetadata:
    """Parse the signature headers; all three must be present before any is parsed."""
    signature = _required(headers, CONTENTFUL_SIGNATURE)
    signed_names = _required(headers, CONTENTFUL_SIGNED_HEADERS)
    timestamp = _required(headers, CONTENTFUL_TIMESTAMP)
    return _ContentfulMetadata(
        signature=_parse_signature(signature),
        signed_names=_parse_signed_names(signed_names),
        timestamp_ms=_parse_timestamp(timestamp),
    )


def _check_fresh(timestamp_ms: int, *, now_ms: int | None, ttl_seconds: float) -> None:
    """Reject timestamps `ttl_seconds` or more away from now, in either direction; 0 disables."""
    if not ttl_seconds >= 0:  # also rejects NaN
        raise ValueError("ttl_seconds must be >= 0 (0 disables the check)")
    if ttl_seconds == 0:
        return
    age_ms = (_now_ms() if now_ms is None else now_ms) - timestamp_ms
    if age_ms >= ttl_seconds * 1000:
        raise SignatureExpired(f"request was signed {age_ms} ms ago; the limit is {ttl_seconds} s")
    if -age_ms >= ttl_seconds * 1000:
        raise SignatureExpired(
            f"request is signed {-age_ms} ms in the future; the limit is {ttl_seconds} s"
        )


def _pick_signed(headers: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    """The request headers named in the signed list; every one of them must be present."""
    absent = sorted(names - headers.keys())
    if absent:
        raise SignatureInvalid(f"signed header {absent[0]!r} is not in the request")
    return {name: headers[name] for name in names}


def verify_contentful_any(
    *,
    secrets: Sequence[str],
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now_ms: int | None = None,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
) -> None:
    """Verify a Contentful-signed request against any of `secrets` (for key rotation).

    `path` is the raw request target as received (path and query, not percent-decoded),
    `headers` the request headers (any case), `body` the raw body bytes. `now_ms` overrides
    the clock; `ttl_seconds=0` disables the timestamp window. Returns None on success and
    raises `SignatureMissing`, `SignatureMalformed`, `SignatureExpired` or `SignatureInvalid`.
    """
    keys = _usable_secrets(secrets)
    normalized = _normalize_headers(headers)
    meta = _read_metadata(normalized)
    _check_fresh(meta.timestamp_ms, now_ms=now_ms, ttl_seconds=ttl_seconds)
    signed = _add_signing_headers(_pick_signed(normalized, meta.signed_names), meta.timestamp_ms)
    message = _canonical(method, path, signed, body)
    if not _matches_any("sha256", keys, message, meta.signature):
        raise SignatureInvalid(f"{CONTENTFUL_SIGNATURE} does not match the request")


def verify_contentful(
    *,
    secret: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now_ms: int | None = None,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
) -> None:
    """Verify a Contentful-signed request against one secret; see `verify_contentful_any`."""
    verify_contentful_any(
        secrets=(secret,),
        method=method,
        path=path,
        headers=headers,
        body=body,
        now_ms=now_ms,
        ttl_seconds=ttl_seconds,
    )


# --- Segment --------------------------------------------------------------------------------


def sign_segment(*, secret: str, body: bytes) -> str:
    """The `X-Signature` Segment sends for `body`: lowercase hex HMAC-SHA1."""
    return _hmac_hex("sha1", secret, body)


def _parse_segment_signature(signature: str | None) -> str:
    if not signature:
        raise SignatureMissing(f"missing {SEGMENT_SIGNATURE} header")
    if not _SHA1_HEX.fullmatch(signature):
        raise SignatureMalformed(f"{SEGMENT_SIGNATURE} is not a 40-character hex digest")
    return signature.lower()


def _skip_json_whitespace(text: str, pos: int) -> int:
    match = _JSON_WHITESPACE.match(text, pos)
    return match.end() if match else pos


def _first_batch_element(body: bytes) -> bytes | None:
    """Raw bytes of the first element when `body` is a JSON array, else None.

    The span is cut out of the body as sent, never re-serialized; for Segment's compact
    `JSON.stringify` output it equals `JSON.stringify(batch[0])`, which is what it signs.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    start = _skip_json_whitespace(text, 0)
    if not text.startswith("[", start):
        return None
    start = _skip_json_whitespace(text, start + 1)
    try:
        _, end = _JSON.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    return text[start:end].encode("utf-8")


def verify_segment_any(
    *,
    secrets: Sequence[str],
    body: bytes,
    signature: str | None,
    accept_batch_first_event: bool = False,
) -> None:
    """Verify Segment's `X-Signature` over the raw `body` against any of `secrets`.

    Segment's Webhooks (Actions) destination signs a batched request over its first event
    only. `accept_batch_first_event=True` accepts such a request, but then the other events
    of the batch are not authenticated; leave it off unless batching is enabled.
    """
    keys = _usable_secrets(secrets)
    expected = _parse_segment_signature(signature)
    if _matches_any("sha1", keys, body, expected):
        return
    first = _first_batch_element(body) if accept_batch_first_event else None
    if first is not None and _matches_any("sha1", keys, first, expected):
        return
    raise SignatureInvalid(f"{SEGMENT_SIGNATURE} does not match the request body")


def verify_segment(
    *,
    secret: str,
    body: bytes,
    signature: str | None,
    accept_batch_first_event: bool = False,
) -> None:
    """Verify Segment's `X-Signature` against one secret; see `verify_segment_any`."""
    verify_segment_any(
        secrets=(secret,),
        body=body,
        signature=signature,
        accept_batch_first_event=accept_batch_first_event,
    )
