"""Specification of webhook signature verification for Contentful and Segment.

Known-answer vectors come from /shared/reference; every failure mode is checked on its own
with fixed timestamps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import BridgeError
from webhooks.exceptions import (
    SignatureExpired,
    SignatureInvalid,
    SignatureMalformed,
    SignatureMissing,
    WebhookError,
)
from webhooks.verification import (
    CONTENTFUL_SIGNATURE,
    CONTENTFUL_SIGNED_HEADERS,
    CONTENTFUL_TIMESTAMP,
    canonical_contentful_request,
    normalize_contentful_path,
    sign_contentful,
    sign_segment,
    verify_contentful,
    verify_contentful_any,
    verify_segment,
    verify_segment_any,
)

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
CONTENTFUL_VECTORS: list[dict[str, Any]] = json.loads(
    (REFERENCE / "contentful" / "webhook-signature-vectors.json").read_text("utf-8")
)["vectors"]
SEGMENT_VECTORS: list[dict[str, Any]] = json.loads(
    (REFERENCE / "segment" / "segment-webhook-signature-vectors.json").read_text("utf-8")
)["vectors"]

# node-apps-toolkit `contextHeadersMap`: app context keys become signed headers.
CONTEXT_HEADERS = {
    "spaceId": "x-contentful-space-id",
    "envId": "x-contentful-environment-id",
    "appId": "x-contentful-app-id",
    "crn": "x-contentful-crn",
}

SECRET = "qlfkupAwYA4ZkNnmBzmNypFqSRWOwhpGRFwQFn5iPNAGHSYdvwed1C77n0Eiaz19"
OTHER_SECRET = "b" * 64
SIGNED_AT = 1_761_122_055_000
METHOD = "POST"
PATH = "/webhooks/contentful"
BODY = b'{"sys":{"type":"Entry","id":"6ZbWjihD33P0ZQDi1NBPNj","revision":3}}'
TOPIC = "ContentManagement.Entry.publish"
REQUEST_HEADERS = {
    "Content-Type": "application/vnd.contentful.management.v1+json",
    "X-Contentful-Topic": TOPIC,
}


def vector_headers(vector: dict[str, Any]) -> dict[str, str]:
    """The vector's request headers plus its app context headers, as the toolkit merges them."""
    given = vector["input"]
    context = given["context"] or {}
    return {**given["headers"], **{CONTEXT_HEADERS[k]: v for k, v in context.items()}}


def signed_request(*, secret: str = SECRET, timestamp_ms: int = SIGNED_AT) -> dict[str, str]:
    """Headers of a POST signed by Contentful at `timestamp_ms`, in the casing HTTP gives."""
    signature = sign_contentful(
        secret=secret,
        method=METHOD,
        path=PATH,
        headers=REQUEST_HEADERS,
        body=BODY,
        timestamp_ms=timestamp_ms,
    )
    return {**REQUEST_HEADERS, **signature}


def verify(
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    method: str = METHOD,
    path: str = PATH,
    now_ms: int = SIGNED_AT,
    ttl_seconds: float = 30,
) -> None:
    verify_contentful(
        secret=SECRET,
        method=method,
        path=path,
        headers=headers,
        body=body,
        now_ms=now_ms,
        ttl_seconds=ttl_seconds,
    )


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != name}


class TestContentfulVectors:
    @pytest.mark.parametrize("vector", CONTENTFUL_VECTORS, ids=lambda v: v["name"])
    def test_path_normalized_like_toolkit(self, vector: dict[str, Any]) -> None:
        assert normalize_contentful_path(vector["input"]["path"]) == vector["normalized_path"]

    @pytest.mark.parametrize("vector", CONTENTFUL_VECTORS, ids=lambda v: v["name"])
    def test_canonical_string_matches(self, vector: dict[str, Any]) -> None:
        given = vector["input"]
        canonical = canonical_contentful_request(
            method=given["method"],
            path=given["path"],
            headers=vector_headers(vector),
            body=given["body"].encode("utf-8"),
            timestamp_ms=given["timestamp_ms"],
        )
        assert canonical == vector["canonical_string"].encode("utf-8")

    @pytest.mark.parametrize("vector", CONTENTFUL_VECTORS, ids=lambda v: v["name"])
    def test_sign_produces_expected_headers(self, vector: dict[str, Any]) -> None:
        given = vector["input"]
        signed = sign_contentful(
            secret=given["secret"],
            method=given["method"],
            path=given["path"],
            headers=vector_headers(vector),
            body=given["body"].encode("utf-8"),
            timestamp_ms=given["timestamp_ms"],
        )
        expected = vector["expected_headers"]
        assert signed == {name: expected[name] for name in signed}
        assert set(signed) == {
            CONTENTFUL_SIGNATURE,
            CONTENTFUL_SIGNED_HEADERS,
            CONTENTFUL_TIMESTAMP,
        }

    @pytest.mark.parametrize("vector", CONTENTFUL_VECTORS, ids=lambda v: v["name"])
    @pytest.mark.parametrize(("ttl_seconds", "delay_ms"), [(30, 0), (30, 29_999), (0, 10**9)])
    def test_expected_headers_verify(
        self, vector: dict[str, Any], ttl_seconds: float, delay_ms: int
    ) -> None:
        given = vector["input"]
        verify_contentful(
            secret=given["secret"],
            method=given["method"],
            path=given["path"],
            headers={**vector_headers(vector), **vector["expected_headers"]},
            body=given["body"].encode("utf-8"),
            now_ms=given["timestamp_ms"] + delay_ms,
            ttl_seconds=ttl_seconds,
        )


class TestContentfulPathNormalization:
    @pytest.mark.parametrize(
        ("path", "normalized"),
        [
            ("/hooks", "/hooks"),
            ("/hooks?", "/hooks"),
            ("/a b/%41", "/a%20b/%2541"),
            ("/p?a=1?b=2", "/p?a%253D1"),
            ("/p?x=(ok)!*'~", "/p?x%253D(ok)!*'~"),
            ("/caf\u00e9?q=\u00e9", "/caf%C3%A9?q%253D%25C3%25A9"),
        ],
    )
    def test_matches_toolkit_encoding(self, path: str, normalized: str) -> None:
        assert normalize_contentful_path(path) == normalized

    def test_unencodable_path_is_malformed(self) -> None:
        with pytest.raises(SignatureMalformed):
            normalize_contentful_path("/bad\ud800")


class TestVerifyContentful:
    def test_signed_request_accepted(self) -> None:
        verify(signed_request())

    def test_uppercase_header_names_accepted(self) -> None:
        headers = {name.upper(): value for name, value in signed_request().items()}
        verify(headers)

    def test_unsigned_header_may_change(self) -> None:
        verify({**signed_request(), "X-Forwarded-For": "10.0.0.1"})

    def test_signed_headers_listed_in_any_order_accepted(self) -> None:
        headers = signed_request()
        names = headers[CONTENTFUL_SIGNED_HEADERS].split(",")
        verify({**headers, CONTENTFUL_SIGNED_HEADERS: ", ".join(reversed(names))})

    @pytest.mark.parametrize(
        "name", [CONTENTFUL_SIGNATURE, CONTENTFUL_SIGNED_HEADERS, CONTENTFUL_TIMESTAMP]
    )
    def test_missing_header_rejected(self, name: str) -> None:
        with pytest.raises(SignatureMissing, match=name) as caught:
            verify(without(signed_request(), name))
        assert caught.value.status_code == 401

    @pytest.mark.parametrize(
        "name", [CONTENTFUL_SIGNATURE, CONTENTFUL_SIGNED_HEADERS, CONTENTFUL_TIMESTAMP]
    )
    def test_empty_header_rejected_as_missing(self, name: str) -> None:
        with pytest.raises(SignatureMissing, match=name):
            verify({**without(signed_request(), name), name: "  "})

    @pytest.mark.parametrize(
        "timestamp", ["soon", "1761122055000.0", "-1761122055000", "1.7e12", "0x1A", "9" * 16]
    )
    def test_malformed_timestamp_rejected(self, timestamp: str) -> None:
        with pytest.raises(SignatureMalformed, match=CONTENTFUL_TIMESTAMP) as caught:
            verify({**signed_request(), CONTENTFUL_TIMESTAMP: timestamp})
        assert caught.value.status_code == 401

    @pytest.mark.parametrize("signature", ["abc", "g" * 64, "a" * 63, "a" * 65, "\u00e9" * 64])
    def test_malformed_signature_rejected(self, signature: str) -> None:
        with pytest.raises(SignatureMalformed, match=CONTENTFUL_SIGNATURE):
            verify({**signed_request(), CONTENTFUL_SIGNATURE: signature})

    def test_uppercase_hex_signature_accepted(self) -> None:
        headers = signed_request()
        verify({**headers, CONTENTFUL_SIGNATURE: headers[CONTENTFUL_SIGNATURE].upper()})

    @pytest.mark.parametrize("required", [CONTENTFUL_SIGNED_HEADERS, CONTENTFUL_TIMESTAMP])
    def test_signed_headers_without_required_name_rejected(self, required: str) -> None:
        headers = signed_request()
        names = headers[CONTENTFUL_SIGNED_HEADERS].split(",")
        listed = ",".join(name for name in names if name != required)
        with pytest.raises(SignatureMalformed, match=required):
            verify({**headers, CONTENTFUL_SIGNED_HEADERS: listed})

    def test_signed_header_absent_from_request_rejected(self) -> None:
        with pytest.raises(SignatureInvalid, match="x-contentful-topic"):
            verify(without(signed_request(), "x-contentful-topic"))

    def test_expired_timestamp_rejected(self) -> None:
        with pytest.raises(SignatureExpired) as caught:
            verify(signed_request(), now_ms=SIGNED_AT + 30_000)
        assert caught.value.status_code == 401

    def test_timestamp_just_inside_ttl_accepted(self) -> None:
        verify(signed_request(), now_ms=SIGNED_AT + 29_999)

    def test_future_timestamp_beyond_ttl_rejected(self) -> None:
        with pytest.raises(SignatureExpired, match="future"):
            verify(signed_request(), now_ms=SIGNED_AT - 30_000)

    def test_small_clock_skew_accepted(self) -> None:
        verify(signed_request(), now_ms=SIGNED_AT - 29_999)

    def test_longer_ttl_accepts_older_request(self) -> None:
        verify(signed_request(), now_ms=SIGNED_AT + 200_000, ttl_seconds=300)

    def test_ttl_zero_disables_window(self) -> None:
        verify(signed_request(), now_ms=SIGNED_AT + 10**10, ttl_seconds=0)

    @pytest.mark.parametrize("ttl_seconds", [-1, float("nan")])
    def test_invalid_ttl_refused(self, ttl_seconds: float) -> None:
        with pytest.raises(ValueError, match="ttl_seconds"):
            verify(signed_request(), ttl_seconds=ttl_seconds)

    def test_real_clock_used_by_default(self) -> None:
        headers = signed_request(timestamp_ms=SIGNED_AT)
        with pytest.raises(SignatureExpired):
            verify_contentful(secret=SECRET, method=METHOD, path=PATH, headers=headers, body=BODY)

    def test_tampered_body_rejected(self) -> None:
        with pytest.raises(SignatureInvalid) as caught:
            verify(signed_request(), body=BODY.replace(b'"revision":3', b'"revision":4'))
        assert caught.value.status_code == 401

    def test_tampered_signed_header_value_rejected(self) -> None:
        with pytest.raises(SignatureInvalid):
            verify({**signed_request(), "X-Contentful-Topic": "ContentManagement.Entry.delete"})

    def test_tampered_timestamp_rejected(self) -> None:
        headers = {**signed_request(), CONTENTFUL_TIMESTAMP: str(SIGNED_AT + 1)}
        with pytest.raises(SignatureInvalid):
            verify(headers)

    @pytest.mark.parametrize(
        ("method", "path"), [("PUT", PATH), (METHOD, "/webhooks/other"), (METHOD, PATH + "?a=1")]
    )
    def test_tampered_method_or_path_rejected(self, method: str, path: str) -> None:
        with pytest.raises(SignatureInvalid):
            verify(signed_request(), method=method, path=path)

    def test_wrong_secret_rejected(self) -> None:
        with pytest.raises(SignatureInvalid) as caught:
            verify(signed_request(secret=OTHER_SECRET))
        assert SECRET not in caught.value.detail
        assert OTHER_SECRET not in caught.value.detail


class TestVerifyContentfulAny:
    def test_second_secret_matches_during_rotation(self) -> None:
        verify_contentful_any(
            secrets=[OTHER_SECRET, SECRET],
            method=METHOD,
            path=PATH,
            headers=signed_request(),
            body=BODY,
            now_ms=SIGNED_AT,
        )

    def test_no_secret_matches_rejected(self) -> None:
        with pytest.raises(SignatureInvalid):
            verify_contentful_any(
                secrets=[OTHER_SECRET, "c" * 64],
                method=METHOD,
                path=PATH,
                headers=signed_request(),
                body=BODY,
                now_ms=SIGNED_AT,
            )

    @pytest.mark.parametrize("secrets", [[], [""]])
    def test_no_configured_secret_refused(self, secrets: list[str]) -> None:
        with pytest.raises(ValueError, match="no webhook signing secret"):
            verify_contentful_any(
                secrets=secrets, method=METHOD, path=PATH, headers={}, body=BODY, now_ms=SIGNED_AT
            )

    def test_bare_string_refused(self) -> None:
        with pytest.raises(TypeError):
            verify_contentful_any(
                secrets=SECRET, method=METHOD, path=PATH, headers={}, body=BODY, now_ms=SIGNED_AT
            )


class TestSegmentVectors:
    @pytest.mark.parametrize("vector", SEGMENT_VECTORS, ids=lambda v: v["name"])
    def test_sign_produces_expected_signature(self, vector: dict[str, Any]) -> None:
        signed = sign_segment(secret=vector["secret"], body=vector["signed_bytes"].encode("utf-8"))
        assert signed == vector["expected_x_signature_hex"]

    @pytest.mark.parametrize("vector", SEGMENT_VECTORS, ids=lambda v: v["name"])
    def test_signed_bytes_verify(self, vector: dict[str, Any]) -> None:
        verify_segment(
            secret=vector["secret"],
            body=vector["signed_bytes"].encode("utf-8"),
            signature=vector["expected_x_signature_hex"],
        )

    @pytest.mark.parametrize("vector", SEGMENT_VECTORS, ids=lambda v: v["name"])
    def test_request_body_verifies_when_batches_accepted(self, vector: dict[str, Any]) -> None:
        verify_segment(
            secret=vector["secret"],
            body=vector["body"].encode("utf-8"),
            signature=vector["expected_x_signature_hex"],
            accept_batch_first_event=True,
        )


class TestVerifySegment:
    secret = "sharedsecretvalue"
    body = b'{"type":"track","userId":"019mr8mf4r","event":"Purchased an Item"}'

    def test_signed_body_accepted(self) -> None:
        verify_segment(
            secret=self.secret,
            body=self.body,
            signature=sign_segment(secret=self.secret, body=self.body),
        )

    def test_uppercase_hex_accepted(self) -> None:
        signature = sign_segment(secret=self.secret, body=self.body).upper()
        verify_segment(secret=self.secret, body=self.body, signature=signature)

    @pytest.mark.parametrize("signature", [None, ""])
    def test_missing_signature_rejected(self, signature: str | None) -> None:
        with pytest.raises(SignatureMissing, match="X-Signature") as caught:
            verify_segment(secret=self.secret, body=self.body, signature=signature)
        assert caught.value.status_code == 401

    @pytest.mark.parametrize("signature", ["xyz", "a" * 64, "sha1=" + "a" * 40, "z" * 40])
    def test_malformed_signature_rejected(self, signature: str) -> None:
        with pytest.raises(SignatureMalformed, match="X-Signature"):
            verify_segment(secret=self.secret, body=self.body, signature=signature)

    def test_tampered_body_rejected(self) -> None:
        signature = sign_segment(secret=self.secret, body=self.body)
        with pytest.raises(SignatureInvalid) as caught:
            verify_segment(secret=self.secret, body=self.body + b" ", signature=signature)
        assert caught.value.status_code == 401

    def test_wrong_secret_rejected(self) -> None:
        signature = sign_segment(secret="not-the-secret", body=self.body)
        with pytest.raises(SignatureInvalid) as caught:
            verify_segment(secret=self.secret, body=self.body, signature=signature)
        assert self.secret not in caught.value.detail

    def test_second_secret_matches_during_rotation(self) -> None:
        signature = sign_segment(secret=self.secret, body=self.body)
        verify_segment_any(secrets=["old", self.secret], body=self.body, signature=signature)

    def test_no_secret_matches_rejected(self) -> None:
        signature = sign_segment(secret=self.secret, body=self.body)
        with pytest.raises(SignatureInvalid):
            verify_segment_any(secrets=["old", "older"], body=self.body, signature=signature)

    @pytest.mark.parametrize("secrets", [[], [""]])
    def test_no_configured_secret_refused(self, secrets: list[str]) -> None:
        with pytest.raises(ValueError, match="no webhook signing secret"):
            verify_segment_any(secrets=secrets, body=self.body, signature="a" * 40)


class TestSegmentBatches:
    secret = "abc123"
    first = b'{"cool":false}'
    batch = b'[{"cool":false},{"cool":true}]'

    def test_batch_rejected_by_default(self) -> None:
        signature = sign_segment(secret=self.secret, body=self.first)
        with pytest.raises(SignatureInvalid):
            verify_segment(secret=self.secret, body=self.batch, signature=signature)

    def test_tampered_first_event_rejected(self) -> None:
        signature = sign_segment(secret=self.secret, body=self.first)
        with pytest.raises(SignatureInvalid):
            verify_segment(
                secret=self.secret,
                body=b'[{"cool":true},{"cool":true}]',
                signature=signature,
                accept_batch_first_event=True,
            )

    def test_only_first_event_is_authenticated(self) -> None:
        signature = sign_segment(secret=self.secret, body=self.first)
        verify_segment(
            secret=self.secret,
            body=b'[{"cool":false},{"forged":true}]',
            signature=signature,
            accept_batch_first_event=True,
        )

    @pytest.mark.parametrize(
        "body", [b'{"cool":false}x', b"[]", b"[", b'[{"cool":fal', b"\xff[", b"[" * 100_000]
    )
    def test_not_a_batch_rejected(self, body: bytes) -> None:
        signature = sign_segment(secret=self.secret, body=self.first)
        with pytest.raises(SignatureInvalid):
            verify_segment(
                secret=self.secret, body=body, signature=signature, accept_batch_first_event=True
            )


class TestErrors:
    @pytest.mark.parametrize(
        ("error", "status"),
        [
            (SignatureMissing, 401),
            (SignatureMalformed, 401),
            (SignatureExpired, 401),
            (SignatureInvalid, 401),
        ],
    )
    def test_errors_carry_status_and_share_base(
        self, error: type[WebhookError], status: int
    ) -> None:
        raised = error("detail")
        assert isinstance(raised, WebhookError)
        assert isinstance(raised, BridgeError)
        assert raised.status_code == status
        assert raised.detail == "detail"
