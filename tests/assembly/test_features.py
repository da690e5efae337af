"""The feature encoder: the generated `encode` equals the plain `reference` rule on any
visitor, and the rule itself reads leaves as the docs say."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from assembly.decisions.visitor import build_visitor
from assembly.learning.features import Encoder, FeatureSpec
from assembly.ports import Profile
from assembly.schemas import AssembleRequest

SPECS = [
    FeatureSpec("audiences:vip", "audience"),
    FeatureSpec("audiences:cart_abandoners", "audience"),
    FeatureSpec("signals.visits", "number"),
    FeatureSpec("signals.cartAbandoned", "bool"),
    FeatureSpec("signals.engagement.video", "number"),
    FeatureSpec("signals.dwell.sku-1001", "number"),
    FeatureSpec("traits.plan", "category", "pro"),
    FeatureSpec("traits.address.country", "category", "DE"),
    FeatureSpec("attributes.device", "category", "mobile"),
]
REQUEST = AssembleRequest.model_validate({"template": "home", "user": {"id": "u1"}})

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["pro", "DE", "mobile", "", "video"]),
)
nodes = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(
            st.sampled_from(
                [
                    "visits",
                    "cartAbandoned",
                    "engagement",
                    "video",
                    "dwell",
                    "sku-1001",
                    "plan",
                    "address",
                    "country",
                    "device",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=8,
)


def visitor(audiences: frozenset[str], traits: Any, signals: Any, attributes: Any) -> Any:
    built = build_visitor(REQUEST, Profile(audiences=audiences), 0.0)
    built.doc.update(traits=traits, signals=signals, attributes=attributes)
    return built


@settings(max_examples=400, deadline=None)
@given(
    audiences=st.frozensets(st.sampled_from(["vip", "cart_abandoners", "other"])),
    traits=nodes,
    signals=nodes,
    attributes=nodes,
    proxied=st.booleans(),
)
def test_the_generated_encoder_equals_the_rule(
    audiences: frozenset[str], traits: Any, signals: Any, attributes: Any, proxied: bool
) -> None:
    if proxied and isinstance(signals, dict):  # a read-only mapping takes the slow path
        signals = MappingProxyType(signals)
    encoder = Encoder(SPECS)
    who = visitor(audiences, traits, signals, attributes)
    assert encoder.encode(who) == encoder.reference(who)


def test_the_rule_reads_leaves_as_documented() -> None:
    encoder = Encoder(SPECS)
    who = visitor(
        frozenset({"cart_abandoners"}),
        {"plan": "pro", "address": {"country": "FR"}},
        {"visits": 3, "cartAbandoned": True, "engagement": {"video": -2}, "dwell": "45"},
        {"device": "mobile"},
    )
    expected = [(1, 1.0), (2, math.log1p(3)), (3, 1.0), (6, 1.0), (8, 1.0)]
    assert encoder.reference(who) == expected
    assert encoder.encode(who) == expected
    assert encoder.dense(who)[2] == math.log1p(3)
    nothing = visitor(frozenset(), None, {"visits": True, "cartAbandoned": 1}, {})
    assert encoder.encode(nothing) == [], "bool is no number, 1 is not true"


def test_an_encoder_without_features_reads_nothing() -> None:
    assert Encoder([]).encode(visitor(frozenset({"vip"}), {}, {"visits": 3}, {})) == []
